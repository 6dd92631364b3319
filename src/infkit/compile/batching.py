"""Running a batch on compiled batch sizes: the one padding rule, for the parity check and for serving."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch


def bucket_for(n: int, sizes: Sequence[int]) -> int:
    """The smallest compiled batch size that holds n items (the largest, when none does)."""
    fitting = [s for s in sizes if s >= n]
    return min(fitting) if fitting else max(sizes)


def run_bucketed(runners: Mapping[int | None, Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
    """Logits for a (N,C,H,W) batch. The key None means one callable for any batch size: one call.
    Otherwise chunks go to the nearest compiled batch size (chunks of the largest when N exceeds it),
    the last padded with copies of its final image, and the padding dropped from the output."""
    if None in runners:
        return runners[None](x).float()
    sizes = sorted(runners)
    outs, start = [], 0
    while start < len(x):
        size = bucket_for(len(x) - start, sizes)
        chunk = x[start : start + size]
        n = len(chunk)
        if n < size:
            chunk = torch.cat([chunk, chunk[-1:].expand(size - n, *chunk.shape[1:])])
        outs.append(runners[size](chunk)[:n].float())
        start += n
    return torch.cat(outs)
