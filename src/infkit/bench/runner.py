"""One load level (closed or open loop) measured in windows, and sweeps over levels."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from infkit.bench import loadgen, promscrape
from infkit.bench.stats import stable, summarize, window


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


def progress_line(pid: int, w: dict) -> str:
    """The seed's format."""
    p50 = 0.0 if w["completed"] == 0 else w["p50"]
    p90 = 0.0 if w["completed"] == 0 else w["p90"]
    return f"pid {pid}: current throughput {w['throughput_rps']:.1f}, latency p50={p50:.3f} p90={p90:.3f}"


def run_level(target: loadgen.Target, spec: LevelSpec, metrics_url: str | None = None, model: str | None = None,
              echo: Callable[[str], None] = print) -> dict:
    """Run one level; Ctrl-C stops it early and the result says so (what was measured is kept)."""
    before = promscrape.scrape(metrics_url, model) if metrics_url else None
    t0 = time.perf_counter()
    run = loadgen.Run(warmup_until=t0 + spec.warmup, deadline=t0 + spec.warmup + spec.max_duration)
    if spec.mode == "closed":
        threads = loadgen.closed_loop(target, int(spec.level), run)
    else:
        threads = loadgen.open_loop(target, float(spec.level), spec.arrivals, spec.workers, run, t0)
    pid = os.getpid()
    measure_from = t0 + spec.warmup
    next_print, next_window = t0 + spec.interval, measure_from + spec.window
    windows: list[dict] = []
    interrupted, stopped_by = False, "time cap"
    try:
        while any(t.is_alive() for t in threads):
            time.sleep(0.05)
            now = time.perf_counter()
            if now >= next_print:
                echo(progress_line(pid, window(run.snapshot(), next_print - spec.interval, next_print)))
                next_print += spec.interval
            if now >= next_window:
                windows.append(window(run.snapshot(), next_window - spec.window, next_window))
                next_window += spec.window
                if spec.stable_windows and stable(windows, spec.stable_windows, spec.tolerance):
                    stopped_by = f"{spec.stable_windows} windows within {spec.tolerance:.0%}"
                    run.stop.set()
            if now >= run.deadline:
                run.stop.set()
    except KeyboardInterrupt:
        interrupted, stopped_by = True, "interrupted (Ctrl-C)"
        run.stop.set()
        echo("stopping: waiting for requests in flight ...")
    for t in threads:
        t.join(timeout=target.timeout + 5)
    after = promscrape.scrape_settled(metrics_url, model) if metrics_url else None
    records = run.snapshot()
    measured = [r for r in records if not r.warmup]
    end = max((r.end for r in measured), default=measure_from)
    summary = summarize(records, max(end - measure_from, 1e-9))
    return {"mode": spec.mode, "level": spec.level, "arrivals": spec.arrivals if spec.mode == "open" else None,
            "summary": summary, "sent_including_warmup": len(records), "windows": windows,
            "stopped_by": stopped_by, "interrupted": interrupted, "server": promscrape.split(before, after),
            "records": records}


def sweep(target: loadgen.Target, specs: Sequence[LevelSpec], metrics_url: str | None = None,
          model: str | None = None, echo: Callable[[str], None] = print) -> list[dict]:
    results = []
    for k, spec in enumerate(specs, 1):
        unit = "clients" if spec.mode == "closed" else "req/s"
        echo(f"level {k}/{len(specs)}: {spec.level:g} {unit} (warm-up {spec.warmup:g} s, at most {spec.max_duration:g} s)")
        result = run_level(target, spec, metrics_url, model, echo)
        results.append(result)
        s = result["summary"]
        echo(f"  -> {s['throughput_rps']:.1f} req/s, p50 {s['latency_s']['p50'] * 1e3:.1f} ms, "
             f"p99 {s['latency_s']['p99'] * 1e3:.1f} ms, errors {s['errors']} ({result['stopped_by']})")
        if result["interrupted"]:
            break
    return results
