"""One load level (closed or open loop) measured in windows, and sweeps over levels."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from infkit.bench import busy, clients, loadgen, promscrape
from infkit.bench.failures import first_errors
from infkit.bench.stats import CPU_LIMIT, MAX_ERROR_RATE, client_cpu, stable, summarize, verdict, window
from infkit.utils.cpu import usable_cores

#: the loops end by themselves at the deadline (closed: no new request after it; open: none intended after it); the
#: stop comes this much later, so an open-loop send intended just before the deadline and woken a little late on a
#: loaded machine still goes out (a soak at 40/s for 2 s once sent 79), while the tail a saturated server leaves
#: unsent stays bounded
CAP_GRACE_S = 0.5


@dataclass
class LevelSpec:
    mode: str  # "closed" (level = concurrency) or "open" (level = requests per second)
    level: float
    warmup: float = 5.0
    max_duration: float = 30.0  # measured seconds at most (after warm-up)
    interval: float = 5.0  # progress line every interval seconds
    window: float = 5.0  # stability windows
    stable_windows: int = 0  # >0: stop once this many windows agree (sweeps)
    tolerance: float = 0.1
    arrivals: str = "constant"
    workers: int = 64  # open loop: sender threads
    processes: int | None = None  # client processes; None: clients.auto_processes
    cpu_limit: float = CPU_LIMIT  # client CPU share above which the client counts as the bottleneck
    max_error_rate: float = MAX_ERROR_RATE  # a level with a larger share of failed requests is failed
    machine_load: bool = True  # sample the load average and other processes' CPU before and after the level


def client_shares(spec: LevelSpec, cores: int) -> list[clients.Share]:
    n = spec.processes or clients.auto_processes(spec.mode, spec.level, spec.workers, cores)
    return clients.shares(spec.mode, spec.level, spec.workers, n, spec.arrivals)


def progress_line(pid: int, w: dict) -> str:
    """The original lightning-hydra-timm benchmark's progress line, kept as it was."""
    p50 = 0.0 if w["completed"] == 0 else w["p50"]
    p90 = 0.0 if w["completed"] == 0 else w["p90"]
    errors = f", errors {w['errors']}" if w.get("errors") else ""
    return f"pid {pid}: current throughput {w['throughput_rps']:.1f}, latency p50={p50:.3f} p90={p90:.3f}{errors}"


def run_level(
    target: loadgen.Target,
    spec: LevelSpec,
    metrics_url: str | None = None,
    model: str | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Run one level; Ctrl-C stops it early and the result says so (what was measured is kept)."""
    cores = usable_cores()
    try:
        machine_before = busy.snapshot() if spec.machine_load else None
        before = promscrape.scrape(metrics_url, model) if metrics_url else None
        load = clients.start(target, client_shares(spec, cores))  # processes spawned and ready: not timed
    except KeyboardInterrupt:
        echo("stopped before the level started: nothing measured")
        return _empty(spec)
    t0 = time.perf_counter()
    run = loadgen.Run(warmup_until=t0 + spec.warmup, deadline=t0 + spec.warmup + spec.max_duration)
    load.go(run, t0)
    pid = os.getpid()
    measure_from = t0 + spec.warmup
    next_print, next_window = t0 + spec.interval, measure_from + spec.window
    settle = 0.0 if isinstance(load, clients.InProcess) else 2 * clients.FLUSH
    windows: list[dict] = []
    interrupted, stopped_by = False, "time cap"
    try:
        while load.alive():
            time.sleep(0.05)
            now = time.perf_counter() - settle  # records from client processes arrive up to `settle` s late
            if now >= next_print:
                echo(progress_line(pid, window(run.snapshot(), next_print - spec.interval, next_print)))
                next_print += spec.interval
            if now >= next_window:
                windows.append(window(run.snapshot(), next_window - spec.window, next_window))
                next_window += spec.window
                if spec.stable_windows and stable(windows, spec.stable_windows, spec.tolerance):
                    stopped_by = f"{spec.stable_windows} windows within {spec.tolerance:.0%}"
                    run.stop.set()
            if now + settle >= run.deadline + CAP_GRACE_S:
                run.stop.set()
    except KeyboardInterrupt:
        interrupted, stopped_by = True, "interrupted (Ctrl-C)"
        run.stop.set()
        echo("stopping: waiting for requests in flight ...")
    load.join(timeout=target.timeout + 5)
    wall = time.perf_counter() - t0
    after = promscrape.scrape_settled(metrics_url, model) if metrics_url else None
    records = sorted(run.snapshot(), key=lambda r: r.end)  # client processes' batches arrive interleaved
    measured = [r for r in records if not r.warmup]
    end = max((r.end for r in measured), default=measure_from)
    summary = summarize(records, max(end - measure_from, 1e-9))
    server = promscrape.split(before, after)
    if server and server["requests"] and records:
        # what the client saw beyond the server (connection, HTTP, its own work), over the same requests: the
        # server's counters include the warm-up's
        client_ms = sum(r.latency for r in records) / len(records) * 1e3
        server["mean_client_rest_ms"] = client_ms - server["mean_server_ms"]
    first, by_status = first_errors(run.errors())
    machine_after = busy.snapshot() if spec.machine_load else None
    return {
        "mode": spec.mode,
        "level": spec.level,
        "arrivals": spec.arrivals if spec.mode == "open" else None,
        "summary": summary,
        "failed": verdict(summary, spec.max_error_rate),
        "max_error_rate": spec.max_error_rate,
        "first_error": first,
        "first_error_by_status": by_status,
        "machine_load": busy.around(machine_before, machine_after) if spec.machine_load else None,
        "sent_including_warmup": len(records),
        "windows": windows,
        "stopped_by": stopped_by,
        "interrupted": interrupted,
        "server": server,
        "client": client_cpu(load.cpu_s, wall, cores, len(records), load.processes, spec.cpu_limit)
        | {"failures": load.failures},
        "records": records,
    }


def client_warnings(result: dict) -> list[str]:
    """The level's client problems, one line each: the bottleneck guard and any client process that failed."""
    client = result.get("client") or {}
    return [f"warning: {w}" for w in client.get("warnings", []) + client.get("failures", [])]


def _empty(spec: LevelSpec) -> dict:
    return {
        "mode": spec.mode,
        "level": spec.level,
        "arrivals": spec.arrivals if spec.mode == "open" else None,
        "summary": summarize([], 1e-9),
        "failed": None,
        "max_error_rate": spec.max_error_rate,
        "first_error": None,
        "first_error_by_status": {},
        "machine_load": None,
        "sent_including_warmup": 0,
        "windows": [],
        "stopped_by": "interrupted (Ctrl-C)",
        "interrupted": True,
        "server": None,
        "client": None,
        "records": [],
    }


def sweep(
    target: loadgen.Target,
    specs: Sequence[LevelSpec],
    metrics_url: str | None = None,
    model: str | None = None,
    echo: Callable[[str], None] = print,
) -> list[dict]:
    results = []
    for k, spec in enumerate(specs, 1):
        unit = "clients" if spec.mode == "closed" else "req/s"
        echo(
            f"level {k}/{len(specs)}: {spec.level:g} {unit} (warm-up {spec.warmup:g} s, "
            f"at most {spec.max_duration:g} s)"
        )
        result = run_level(target, spec, metrics_url, model, echo)
        results.append(result)
        s = result["summary"]
        echo(
            f"  -> {s['throughput_rps']:.1f} successful req/s, p50 {s['latency_s']['p50'] * 1e3:.1f} ms, "
            f"p99 {s['latency_s']['p99'] * 1e3:.1f} ms, errors {s['errors']} ({result['stopped_by']})"
        )
        if result["failed"]:
            echo(f"  FAILED: {result['failed']}; first error: {result['first_error']}")
        for line in client_warnings(result):
            echo(f"  {line}")
        if result["interrupted"]:
            break
    return results
