"""Running a batch on compiled batch sizes: the one padding rule, for the parity check and for serving.

A batch is a torch tensor (artifacts that run on torch, and the compile-time checks) or a numpy array (ONNX Runtime
artifacts served without torch: infkit.serve.core.runtime); the output is of the same kind, and torch is only touched
for tensors."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np


def bucket_for(n: int, sizes: Sequence[int]) -> int:
    """The smallest compiled batch size that holds n items (the largest, when none does)."""
    fitting = [s for s in sizes if s >= n]
    return min(fitting) if fitting else max(sizes)


def _as_float(y: Any) -> Any:
    return y.astype(np.float32, copy=False) if isinstance(y, np.ndarray) else y.float()


def _pad(chunk: Any, size: int) -> Any:
    """`chunk` grown to `size` rows with copies of its last one."""
    n = len(chunk)
    if isinstance(chunk, np.ndarray):
        return np.concatenate([chunk, np.repeat(chunk[-1:], size - n, axis=0)])
    import torch  # chunk is a tensor: torch is loaded already

    return torch.cat([chunk, chunk[-1:].expand(size - n, *chunk.shape[1:])])


def _cat(parts: list[Any]) -> Any:
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import torch

    return torch.cat(parts)


def run_bucketed(runners: Mapping[int | None, Callable[[Any], Any]], x: Any) -> Any:
    """Logits for a (N,C,H,W) batch (tensor or numpy array; the logits are the same kind). The key None means one
    callable for any batch size: one call. Otherwise chunks go to the nearest compiled batch size (chunks of the
    largest when N exceeds it), the last padded with copies of its final image, and the padding dropped from the
    output."""
    if None in runners:
        return _as_float(runners[None](x))
    sizes = sorted(runners)
    outs, start = [], 0
    while start < len(x):
        size = bucket_for(len(x) - start, sizes)
        chunk = x[start : start + size]
        n = len(chunk)
        if n < size:
            chunk = _pad(chunk, size)
        outs.append(_as_float(runners[size](chunk)[:n]))
        start += n
    return _cat(outs)
