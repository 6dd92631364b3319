"""Check a compiled model against the eager one on real validation images."""

from __future__ import annotations

from collections.abc import Callable

import torch


def run_in_batches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int,
                   pad: bool) -> torch.Tensor:
    """Run fn over x in chunks of batch_size; with pad, the last chunk is padded to batch_size
    (static-shape artifacts) and the padding dropped from the output."""
    outs = []
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        n = len(chunk)
        if pad and n < batch_size:
            chunk = torch.cat([chunk, chunk[-1:].expand(batch_size - n, *chunk.shape[1:])])
        outs.append(fn(chunk)[:n].float())
    return torch.cat(outs)


def compare(eager: torch.Tensor, compiled: torch.Tensor) -> dict:
    agree = (eager.argmax(1) == compiled.argmax(1)).float().mean().item()
    return {"max_abs_logit_diff": float((eager - compiled).abs().max()), "top1_agreement": float(agree)}


def check(eager_model: torch.nn.Module, compiled_by_bs: dict[int, Callable], images: torch.Tensor,
          labels: torch.Tensor, static_batch: bool) -> dict:
    """Parity of each compiled callable (by batch size) against the eager model.

    Returns the worst case over batch sizes plus the per-batch-size detail and both accuracies."""
    with torch.inference_mode():
        eager = eager_model.eval()(images).float()
    by_bs = {}
    for bs, fn in compiled_by_bs.items():
        out = run_in_batches(fn, images, bs, pad=static_batch)
        by_bs[str(bs)] = compare(eager, out) | {"top1_accuracy": float((out.argmax(1) == labels).float().mean())}
    return {
        "images": int(len(images)),
        "max_abs_logit_diff": max(v["max_abs_logit_diff"] for v in by_bs.values()),
        "top1_agreement": min(v["top1_agreement"] for v in by_bs.values()),
        "eager_top1_accuracy": float((eager.argmax(1) == labels).float().mean()),
        "by_batch_size": by_bs,
    }
