"""Records -> numbers: percentiles, windows, summaries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from infkit.bench.record import Record


def percentiles(values: Sequence[float], qs=(50, 90, 99)) -> dict[str, float]:
    if not len(values):
        return {f"p{q}": float("nan") for q in qs}
    arr = np.asarray(values, dtype=float)
    return {f"p{q}": float(np.percentile(arr, q)) for q in qs}


def latency_summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": float(np.mean(values)) if len(values) else float("nan"),
        **percentiles(values),
        "max": float(max(values)) if len(values) else float("nan"),
    }


def summarize(records: Iterable[Record], duration: float, lag_tolerance: float = 0.005) -> dict:
    """Counts, errors by status, throughput and latency of the measured (non-warm-up) records. Throughput and
    latency are the successful (2xx) responses' only: an error is not work done, and a fast 404 is not a fast
    answer. What failed is beside them: the error rate and the count per status; every answer's latency is in
    all_latency_s."""
    measured = [r for r in records if not r.warmup]
    ok = [r.latency for r in measured if 200 <= r.status < 300]
    lat = [r.latency for r in measured]
    statuses = Counter(str(r.status) for r in measured)
    errors = {s: n for s, n in statuses.items() if not s.startswith("2")}
    lags = [r.lag for r in measured]
    late = sum(lag > lag_tolerance for lag in lags)
    n_errors = sum(errors.values())
    return {
        "requests": len(measured),
        "ok": len(ok),
        "errors": n_errors,
        "error_rate": n_errors / len(measured) if measured else float("nan"),
        "errors_by_status": dict(sorted(errors.items())),
        "duration_s": duration,
        "throughput_rps": len(ok) / duration if duration > 0 else float("nan"),
        "responses_rps": len(measured) / duration if duration > 0 else float("nan"),
        "latency_s": latency_summary(ok),
        "all_latency_s": latency_summary(lat),
        "client_lag": {"late_requests": late, "tolerance_s": lag_tolerance, "max_s": float(max(lags)) if lags else 0.0},
    }


MAX_ERROR_RATE = 0.01  # a level with more failed requests than this share is failed


def verdict(summary: dict, max_error_rate: float = MAX_ERROR_RATE) -> str | None:
    """Why a level failed (one line), or None: nothing answered successfully, or its error rate is above the limit."""
    if summary["requests"] and not summary["ok"]:
        return f"every one of its {summary['requests']} requests failed"
    if summary["requests"] and summary["error_rate"] > max_error_rate:
        return f"error rate {summary['error_rate']:.1%} > --max-error-rate {max_error_rate:.1%}"
    if not summary["requests"]:
        return "no request completed in the measured window"
    return None


def window(records: Sequence[Record], t0: float, t1: float) -> dict:
    """Throughput and latency of the successful requests that completed in [t0, t1) (and how many failed)."""
    done = [r for r in records if t0 <= r.end < t1]
    ok = [r.latency for r in done if 200 <= r.status < 300]
    span = max(t1 - t0, 1e-9)
    return {"completed": len(ok), "errors": len(done) - len(ok), "throughput_rps": len(ok) / span, **percentiles(ok)}


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


CPU_LIMIT = 0.8  # as Triton Model Analyzer's perf_analyzer_cpu_util guard: 80 % of the client's cores


def client_cpu(
    cpu_s: Sequence[float], wall_s: float, cores: int, requests: int, load_processes: int, limit: float = CPU_LIMIT
) -> dict:
    """The client's own CPU use over a level: user+sys seconds of each client process, per wall second, per usable
    core. A Python process uses at most about one core, so the client was the bottleneck when one process was busy
    `limit` of a core, or all together `limit` of the machine's usable cores; the warning says the fix."""
    wall = max(wall_s, 1e-9)
    total = float(sum(cpu_s))
    busiest = max(cpu_s, default=0.0) / wall
    util = total / wall / max(cores, 1)
    warnings = []
    if util >= limit:
        warnings.append(
            f"the client used {util:.0%} of the {cores} usable cores (limit {limit:.0%}): the numbers "
            "measure the client, not the server; run the client on another machine, or use fewer clients"
        )
    elif busiest >= limit:
        fix = (
            f"raise --processes (now {load_processes}; up to {cores}, one per usable core)"
            if load_processes < cores
            else "run the client on another machine with more cores"
        )
        warnings.append(
            f"a client process was busy {busiest:.0%} of a core (limit {limit:.0%}; a Python process "
            f"uses at most one): the client was the bottleneck; {fix}"
        )
    return {
        "processes": load_processes,
        "cpu_s": total,
        "cpu_by_process_s": [float(c) for c in cpu_s],
        "wall_s": wall_s,
        "cores_used": total / wall,
        "usable_cores": cores,
        "cpu_util": util,
        "busiest_process_util": busiest,
        "requests": requests,
        "cpu_ms_per_request": total / requests * 1e3 if requests else float("nan"),
        "limit": limit,
        "bottleneck": bool(warnings),
        "warnings": warnings,
    }
