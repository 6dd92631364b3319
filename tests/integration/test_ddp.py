"""Distributed training as a user runs it: a real 2-process DDP fit + test on CPU (gloo) with the digits data."""

import json
import re

import pytest
import torch

from infkit.cli.train import main as train_main
from infkit.train import checkpoint
from infkit.train.run import build_datamodule_and_model
from infkit.utils.compose import compose_config
from tests.conftest import run_entry
from tests.helpers.run_if import run_if
from tests.integration.test_cli import assert_one_line_error

pytestmark = pytest.mark.slow

# tiny: 3 training batches per rank, one epoch. Validation and test run on whole splits so their numbers can be
# checked exactly; test_fraction gives an odd test split, which a DistributedSampler over 2 ranks would pad with a
# repeated image (so a duplicated sample would change the accuracy), and an even validation split, which it does not.
DDP_TINY = [
    "experiment=digits_example",
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "+trainer.enable_progress_bar=false",
    "~callbacks.rich_progress_bar",
    "~callbacks.early_stopping",
    "data.test_fraction=0.1005",
]


def evaluate(ckpt: str, split: str, overrides: list[str], out_dir) -> tuple[int, int, float]:
    """A plain single-process evaluation of a checkpoint: (correct, images, mean loss) on one split."""
    cfg = compose_config("train", overrides, out_dir)
    datamodule, _ = build_datamodule_and_model(cfg)
    loaded = checkpoint.load(ckpt)
    assert list(datamodule.mean) == list(loaded.hparams["mean"])
    datamodule.setup(split)
    loader = datamodule.val_dataloader() if split == "val" else datamodule.test_dataloader()
    correct = total = 0
    loss = 0.0
    with torch.inference_mode():
        for x, y in loader:
            logits = loaded.net(x)
            correct += int((logits.argmax(dim=1) == y).sum())
            loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            total += len(y)
    assert total == datamodule.split_length(split)
    return correct, total, loss / total


def test_two_process_ddp_fit_and_test_on_cpu(tmp_path):
    proc = run_entry("train.py", *DDP_TINY, cwd=tmp_path, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Traceback" not in out
    assert "Starting with 2 processes" in out and "distributed_backend=gloo" in out

    # one voice: only global rank 0 reports, and it writes the only test_metrics.json
    assert out.count("sync_batchnorm off:") == 1
    assert len(re.findall(r"best checkpoint: ", out)) == 1
    assert len(re.findall(r"test metrics: ", out)) == 1
    written = list(tmp_path.rglob("test_metrics.json"))
    assert len(written) == 1, written
    metrics = json.loads(written[0].read_text())
    assert metrics["world_size"] == 2
    ckpt = metrics["best_ckpt"]
    assert re.search(r"best checkpoint: (\S+\.ckpt)", out).group(1) == ckpt

    # the test ran once over the whole (odd-sized) test split: it equals a single-process evaluation of the
    # checkpoint exactly; one repeated image would move the accuracy by at least 1/(n*(n+1))
    correct, total, loss = evaluate(ckpt, "test", DDP_TINY, tmp_path / "eval")
    assert total % 2 == 1 and 0 < correct < total
    assert metrics["test/acc"] == pytest.approx(correct / total, abs=1e-6)
    assert metrics["test/loss"] == pytest.approx(loss, rel=1e-4)

    # validation metrics are synced across the ranks: each rank saw half the (even-sized) split, and the
    # logged epoch values are those of the whole split
    correct, total, loss = evaluate(ckpt, "val", DDP_TINY, tmp_path / "eval")
    assert total % 2 == 0
    assert metrics["val/acc"] == pytest.approx(correct / total, abs=1e-6)
    assert metrics["val/loss"] == pytest.approx(loss, rel=1e-4)


def test_sync_batchnorm_forced_on_cpu_is_one_clear_error(tmp_path, call_main):
    proc = call_main(
        train_main,
        "experiment=digits_example",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.sync_batchnorm=true",
        cwd=tmp_path,
    )
    assert_one_line_error(proc, r"trainer\.sync_batchnorm=true needs CUDA devices.*trainer\.sync_batchnorm=auto")
    assert not list(tmp_path.rglob("*.ckpt"))


@run_if(cuda=False)
def test_ddp_on_gpu_without_one_is_one_clear_error(tmp_path, call_main):
    proc = call_main(train_main, "experiment=digits_example", "trainer=ddp", "trainer.accelerator=gpu", cwd=tmp_path)
    assert_one_line_error(proc, r"the trainer config does not work here: .*trainer\.accelerator")
