"""infkit train / python src/train.py: fit a timm classifier with Lightning, test the best checkpoint once."""

from __future__ import annotations

from infkit.cli._common import run_hydra
from infkit.utils.cli import log

GROUPS = ("experiment", "data", "model", "trainer", "logger", "callbacks")


def task(cfg) -> None:
    from infkit.train.run import run

    result = run(cfg)
    if result is None:  # a distributed run's other processes: rank 0 reports
        return
    log.info("best checkpoint: %s", result.best_ckpt)
    log.info("test metrics:    %s (test/acc=%.4f)", result.metrics_path, result.metrics.get("test/acc", float("nan")))


def main(argv: list[str] | None = None) -> int:
    return run_hydra("train.yaml", argv, task, GROUPS)
