"""Shared fixtures: the real Hydra configs made tiny, and one trained digits model per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infkit.utils.compose import compose_config

ROOT = Path(__file__).resolve().parents[1]

# a tiny but real training run: digits, resnet18, a few batches of one epoch, no progress bar
TINY_TRAIN = [
    "experiment=digits_example",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "+trainer.enable_progress_bar=false",
    "~callbacks.rich_progress_bar",
    "~callbacks.early_stopping",
]


def run_entry(script: str, *overrides: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run an entry script the way a user does, from `cwd` (its logs/ land there)."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(ROOT / "src" / script), *overrides], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory):
    """A checkpoint from a tiny real training run (seconds)."""
    from infkit.train import run as train_stage

    out = tmp_path_factory.mktemp("tiny_train")
    return train_stage.run(compose_config("train", TINY_TRAIN, out))


@pytest.fixture(scope="session")
def digits_trained(tmp_path_factory):
    """The full digits_example experiment, as `python src/train.py experiment=digits_example` runs it."""
    from infkit.train import run as train_stage

    out = tmp_path_factory.mktemp("digits_train")
    overrides = ["experiment=digits_example", "+trainer.enable_progress_bar=false", "~callbacks.rich_progress_bar"]
    return train_stage.run(compose_config("train", overrides, out))
