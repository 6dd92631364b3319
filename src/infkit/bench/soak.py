"""A soak test: open-loop load at a fraction of the measured capacity for a long time, reported in windows —
errors, latency percentiles, worker and frontend memory, and how much the server's logs grew."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from infkit.bench import loadgen
from infkit.bench.runner import LevelSpec, run_level
from infkit.bench.stats import MAX_ERROR_RATE, percentiles
from infkit.errors import InfkitError
from infkit.serve.core import front
from infkit.serve.core.process import group_members, log_bytes, read_state


def server_processes(state_dir: Path) -> dict[str, list[psutil.Process]]:
    """The frontend (java, and the front before it when on: infkit.serve.core.front and nginx) and the Python workers of
    the TorchServe started from state_dir."""
    state = read_state(Path(state_dir))
    out: dict[str, list[psutil.Process]] = {"frontend": [], "workers": []}
    for proc in group_members(int(state["pgid"])) if state else []:
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "model_service_worker" in cmd:
            out["workers"].append(proc)
        elif "java" in cmd or front.MODULE in cmd or front.OLD_MODULE in cmd or cmd.startswith("nginx"):
            out["frontend"].append(proc)
    return out


def memory_mib(state_dir: Path) -> dict[str, float]:
    """Resident memory of the frontend and of all workers together, in MiB."""
    total = {}
    for kind, procs in server_processes(state_dir).items():
        rss = 0
        for proc in procs:
            try:
                rss += proc.memory_info().rss
            except psutil.Error:
                pass
        total[kind] = rss / 2**20
    return total


class Sampler:
    """Samples memory and log bytes every `every` seconds in a background thread."""

    def __init__(self, state_dir: Path, every: float = 5.0):
        self.state_dir, self.every = Path(state_dir), every
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="soak-sampler")

    def sample(self) -> dict:
        return {
            "t": time.perf_counter(),
            **memory_mib(self.state_dir),
            "log_bytes": log_bytes(self.state_dir / "logs"),
        }

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(self.sample())

    def __enter__(self) -> Sampler:
        self.samples.append(self.sample())
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self.sample())


def capacity(
    target: loadgen.Target,
    clients: int = 16,
    seconds: float = 20.0,
    echo: Callable[[str], None] = print,
    max_error_rate: float = MAX_ERROR_RATE,
) -> float:
    """Closed-loop successful throughput with `clients` clients: the rate a soak takes its fraction of. A server
    failing more than `max_error_rate` of the requests has no capacity to speak of: that stops here, naming the
    first error."""
    spec = LevelSpec(
        mode="closed",
        level=clients,
        warmup=min(5.0, seconds / 4),
        max_duration=seconds,
        interval=seconds,
        max_error_rate=max_error_rate,
    )
    result = run_level(target, spec, echo=echo)
    if result["failed"] and not result["interrupted"]:
        raise InfkitError(
            f"the capacity measurement failed ({result['failed']}; first error: {result['first_error']}): fix the "
            "server or the URL, or give --rate to skip the measurement"
        )
    return float(result["summary"]["throughput_rps"])


def soak(
    target: loadgen.Target,
    state_dir: Path,
    rate: float,
    duration: float,
    window: float = 300.0,
    workers: int = 32,
    echo: Callable[[str], None] = print,
) -> dict:
    """Open loop at `rate` for `duration` seconds; the result is cut into windows of `window` seconds."""
    spec = LevelSpec(
        mode="open", level=rate, warmup=0.0, max_duration=duration, interval=min(window, 60.0), workers=workers
    )
    with Sampler(state_dir, every=min(5.0, window / 4)) as sampler:
        level = run_level(target, spec, echo=echo)
    records = level.pop("records")
    t0 = min((r.intended for r in records), default=0.0)
    rows = []
    n_windows = max(1, int(-(-duration // window)))
    for k in range(n_windows):
        lo, hi = t0 + k * window, t0 + min((k + 1) * window, duration)
        inside = [r for r in records if lo <= r.intended < hi]
        if not inside:
            continue
        mem = [s for s in sampler.samples if s["t"] < hi + 1e-9] or sampler.samples[:1]
        lat = percentiles([r.latency for r in inside if 200 <= r.status < 300], qs=(50, 99))  # successful ones
        rows.append(
            {
                "window": k + 1,
                "from_s": round(lo - t0, 1),
                "to_s": round(hi - t0, 1),
                "requests": len(inside),
                "errors": sum(not 200 <= r.status < 300 for r in inside),
                "p50_ms": lat["p50"] * 1e3,
                "p99_ms": lat["p99"] * 1e3,
                "workers_rss_mib": mem[-1].get("workers"),
                "frontend_rss_mib": mem[-1].get("frontend"),
                "log_bytes": mem[-1]["log_bytes"],
            }
        )
    first, last = sampler.samples[0], sampler.samples[-1]
    return {
        "rate": rate,
        "duration_s": duration,
        "window_s": window,
        "summary": level["summary"],
        "first_error": level["first_error"],
        "first_error_by_status": level["first_error_by_status"],
        "machine_load": level["machine_load"],
        "windows": rows,
        "interrupted": level["interrupted"],
        "memory_mib": {
            "workers_start": first.get("workers"),
            "workers_end": last.get("workers"),
            "frontend_start": first.get("frontend"),
            "frontend_end": last.get("frontend"),
        },
        "logs": {
            "bytes_start": first["log_bytes"],
            "bytes_end": last["log_bytes"],
            "bytes_per_request": (last["log_bytes"] - first["log_bytes"]) / max(1, len(records)),
        },
    }


def markdown(result: dict) -> str:
    head = (
        "| window | seconds | requests | errors | p50 ms (2xx) | p99 ms (2xx) | workers RSS MiB | frontend RSS MiB | "
        "log bytes |\n"
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {w['window']} | {w['from_s']:g}-{w['to_s']:g} | {w['requests']} | {w['errors']} | "
        f"{w['p50_ms']:.1f} | {w['p99_ms']:.1f} | {w['workers_rss_mib'] or 0:.0f} | "
        f"{w['frontend_rss_mib'] or 0:.0f} | {w['log_bytes']} |\n"
        for w in result["windows"]
    )
    m, lg = result["memory_mib"], result["logs"]
    return (
        head + body + f"\nopen loop at {result['rate']:.1f} req/s for {result['duration_s']:g} s: "
        f"{result['summary']['requests']} requests, {result['summary']['errors']} errors "
        f"({result['summary']['error_rate']:.2%}), {result['summary']['throughput_rps']:.1f} successful req/s"
        + (f", first error: {result['first_error']}" if result.get("first_error") else "")
        + "; worker RSS "
        f"{m['workers_start'] or 0:.0f} -> {m['workers_end'] or 0:.0f} MiB, frontend "
        f"{m['frontend_start'] or 0:.0f} -> {m['frontend_end'] or 0:.0f} MiB; logs "
        f"{lg['bytes_start']} -> {lg['bytes_end']} bytes ({lg['bytes_per_request']:.2f} bytes per request).\n"
    )
