"""Small latency helpers shared by the demo and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def latencies(
    fn: Callable[[], object], warmup: int = 5, repeats: int = 30, max_seconds: float = 10.0, min_repeats: int = 3
) -> np.ndarray:
    """Seconds per call of fn after warm-up; stops early after max_seconds (at least min_repeats calls)."""
    for _ in range(warmup):
        fn()
    times = []
    deadline = time.perf_counter() + max_seconds
    while len(times) < repeats and (len(times) < min_repeats or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return np.asarray(times)
