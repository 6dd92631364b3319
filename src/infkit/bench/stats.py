"""Records -> numbers: percentiles, windows, summaries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Record:
    """One request. Times are perf_counter seconds. `intended` is when it should have been sent
    (open loop: the schedule; closed loop: equal to `start`); latency counts from `intended`."""

    intended: float
    start: float
    end: float
    status: int  # HTTP status; 0 for a transport error (connection refused, timeout)
    warmup: bool = False

    @property
    def latency(self) -> float:
        return self.end - self.intended

    @property
    def lag(self) -> float:
        """How late the client itself sent it (open loop)."""
        return self.start - self.intended

    def row(self) -> dict:
        return asdict(self) | {"latency": self.latency}


def percentiles(values: Sequence[float], qs=(50, 90, 99)) -> dict[str, float]:
    if not len(values):
        return {f"p{q}": float("nan") for q in qs}
    arr = np.asarray(values, dtype=float)
    return {f"p{q}": float(np.percentile(arr, q)) for q in qs}


def summarize(records: Iterable[Record], duration: float, lag_tolerance: float = 0.005) -> dict:
    """Counts, errors by status, throughput and latency of the measured (non-warm-up) records."""
    measured = [r for r in records if not r.warmup]
    ok = [r.latency for r in measured if 200 <= r.status < 300]
    lat = [r.latency for r in measured]
    statuses = Counter(str(r.status) for r in measured)
    errors = {s: n for s, n in statuses.items() if not s.startswith("2")}
    lags = [r.lag for r in measured]
    late = sum(lag > lag_tolerance for lag in lags)
    return {
        "requests": len(measured),
        "ok": len(ok),
        "errors": sum(errors.values()),
        "errors_by_status": dict(sorted(errors.items())),
        "duration_s": duration,
        "throughput_rps": len(measured) / duration if duration > 0 else float("nan"),
        "latency_s": {"mean": float(np.mean(lat)) if lat else float("nan"), **percentiles(lat),
                      "max": float(max(lat)) if lat else float("nan")},
        "ok_latency_s": percentiles(ok),
        "client_lag": {"late_requests": late, "tolerance_s": lag_tolerance,
                       "max_s": float(max(lags)) if lags else 0.0},
    }


def window(records: Sequence[Record], t0: float, t1: float) -> dict:
    """Throughput and latency of the requests that completed in [t0, t1)."""
    done = [r for r in records if t0 <= r.end < t1]
    span = max(t1 - t0, 1e-9)
    return {"completed": len(done), "throughput_rps": len(done) / span, **percentiles([r.latency for r in done])}


def stable(windows: Sequence[dict], count: int, tolerance: float) -> bool:
    """The last `count` windows agree within `tolerance` (relative) on throughput and p50."""
    if len(windows) < count:
        return False
    last = windows[-count:]
    for key in ("throughput_rps", "p50"):
        vals = [w[key] for w in last]
        if any(np.isnan(vals)) or min(vals) <= 0:
            return False
        if (max(vals) - min(vals)) / float(np.mean(vals)) > tolerance:
            return False
    return True
