"""Check a compiled model against the eager one on real validation images."""

from __future__ import annotations

from collections.abc import Callable

import torch

from infkit.compile.batching import run_bucketed


def compare(eager: torch.Tensor, compiled: torch.Tensor) -> dict:
    agree = (eager.argmax(1) == compiled.argmax(1)).float().mean().item()
    return {"max_abs_logit_diff": float((eager - compiled).abs().max()), "top1_agreement": float(agree)}


def check(eager_model: torch.nn.Module, compiled_by_bs: dict[int, Callable], images: torch.Tensor,
          labels: torch.Tensor) -> dict:
    """Parity of each compiled callable (by batch size) against the eager model.

    Returns the worst case over batch sizes plus the per-batch-size detail and both accuracies."""
    with torch.inference_mode():
        eager = eager_model.eval()(images).float()
    by_bs = {}
    for bs, fn in compiled_by_bs.items():
        # each callable runs at exactly its batch size, as a server running that bucket would
        out = run_bucketed({bs: fn}, images)
        by_bs[str(bs)] = compare(eager, out) | {"top1_accuracy": float((out.argmax(1) == labels).float().mean())}
    return {
        "images": int(len(images)),
        "max_abs_logit_diff": max(v["max_abs_logit_diff"] for v in by_bs.values()),
        "top1_agreement": min(v["top1_agreement"] for v in by_bs.values()),
        "eager_top1_accuracy": float((eager.argmax(1) == labels).float().mean()),
        "by_batch_size": by_bs,
    }
