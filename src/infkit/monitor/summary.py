"""neuron-monitor reports -> one summary per benchmark level: NeuronCore utilisation, memory, runtime latency.

A report covers the `period` seconds before it arrived; it counts for a level when the middle of that
period falls inside the level's measured span (from the first measured request's intended send time to
the last answer). Runtime latency percentiles come per period from neuron-monitor and cannot be merged
exactly: a level's p-th percentile is the mean of its periods' p-th percentiles weighted by the
executions each period completed (p0 and p100 are the minimum and maximum)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from infkit.monitor.schema import PERCENTILES, Report

DEFAULT_PERIOD = 5.0  # neuron-monitor's default period, seconds
NEURON_COLUMNS = [
    "neuron_reports",
    "neuroncore_util_mean_pct",
    "neuroncore_util_max_pct",
    "neuron_device_mem_max_bytes",
    "neuron_host_mem_max_bytes",
    "neuron_latency_p50_s",
    "neuron_latency_p99_s",
    "neuron_device_latency_p50_s",
    "neuron_device_latency_p99_s",
    "neuron_completed",
    "neuron_errors",
]


def _core_key(core: str):
    return (0, int(core)) if core.isdigit() else (1, core)


def _mean_max(values: Sequence[float]) -> dict[str, float] | None:
    return {"mean": sum(values) / len(values), "max": max(values)} if values else None


def in_span(stamped: Sequence[tuple[float, Report]], t0: float, t1: float) -> list[Report]:
    """The reports whose period's middle lies in [t0, t1] (times: perf_counter seconds)."""
    return [r for t, r in stamped if t0 <= t - (r.period or DEFAULT_PERIOD) / 2 <= t1]


def _latency(reports: Sequence[Report], key: str) -> dict[str, float] | None:
    rows = []  # (weight, percentiles) per runtime per report
    for rep in reports:
        for rt in rep.runtimes:
            pcts = getattr(rt, key)
            if pcts:
                rows.append((rt.status.get("completed", 0.0), pcts))
    if not rows:
        return None
    if not sum(w for w, _ in rows):
        rows = [(1.0, p) for _, p in rows]
    out = {}
    for p in PERCENTILES:
        vals = [(w, pcts[p]) for w, pcts in rows if p in pcts]
        if not vals:
            continue
        if p == "p0":
            out[p] = min(v for _, v in vals)
        elif p == "p100":
            out[p] = max(v for _, v in vals)
        elif sum(w for w, _ in vals):
            out[p] = sum(w * v for w, v in vals) / sum(w for w, _ in vals)
    return out


def summarize(reports: Sequence[Report]) -> dict:
    """One level's neuron numbers (utilisation in percent, memory in bytes, latency in seconds)."""
    if not reports:
        return {"reports": 0}
    per_core: dict[str, list[float]] = defaultdict(list)
    device, host = [], []
    errors: dict[str, float] = defaultdict(float)
    completed = 0.0
    for rep in reports:
        util: dict[str, float] = defaultdict(float)
        for rt in rep.runtimes:
            for core, pct in rt.utilization.items():
                util[core] += pct  # a NeuronCore belongs to one runtime; the others report it idle or not at all
            completed += rt.status.get("completed", 0.0)
            for kind, n in rt.errors.items():
                errors[kind] += n
        for core, pct in util.items():
            per_core[core].append(pct)
        dev = [rt.device_bytes for rt in rep.runtimes if rt.device_bytes is not None]
        hst = [rt.host_bytes for rt in rep.runtimes if rt.host_bytes is not None]
        if dev:
            device.append(sum(dev))
        if hst:
            host.append(sum(hst))
    cores = {c: _mean_max(per_core[c]) for c in sorted(per_core, key=_core_key)}
    periods = [r.period for r in reports if r.period]
    return {
        "reports": len(reports),
        "period_s": sum(periods) / len(periods) if periods else None,
        "neuroncore_utilization_pct": cores,
        "neuroncore_utilization_mean_pct": sum(c["mean"] for c in cores.values()) / len(cores) if cores else None,
        "neuroncore_utilization_max_pct": max(c["max"] for c in cores.values()) if cores else None,
        "device_memory_bytes": _mean_max(device),
        "host_memory_bytes": _mean_max(host),
        "total_latency_s": _latency(reports, "total_latency"),
        "device_latency_s": _latency(reports, "device_latency"),
        "executions": {
            "completed": completed,
            "errors": sum(errors.values()),
            "errors_by_type": {k: v for k, v in errors.items() if v},
        },
    }


def level_span(result: dict) -> tuple[float, float] | None:
    """A benchmark level's measured span in perf_counter seconds, from its records."""
    measured = [r for r in result.get("records", []) if not r.warmup]
    if not measured:
        return None
    return min(r.intended for r in measured), max(r.end for r in measured)


def attach(results: list[dict], stream, echo: Callable[[str], None] = print, wait: bool = True) -> None:
    """Give every level result a "neuron" summary of the reports that fell in its span. Waits (at most one
    period and a second) for the report that covers the end of the last level."""
    spans = [level_span(r) for r in results]
    ends = [s[1] for s in spans if s]
    known = [r.period for _, r in stream.snapshot() if r.period]
    period = max(known) if known else DEFAULT_PERIOD
    if wait and ends and not stream.ended.is_set():
        echo(f"neuron-monitor: waiting up to {period + 1:.0f} s for the report covering the last level")
        stream.wait_past(max(ends) + period / 2, timeout=period + 1)
    stamped = stream.snapshot()
    for r, span in zip(results, spans):
        r["neuron"] = summarize(in_span(stamped, *span)) if span else {"reports": 0}
        if not r["neuron"]["reports"]:
            echo(
                f"neuron-monitor: no report fell in level {r['level']:g}; give neuron-monitor a period shorter "
                f'than a level (its config file: "period": "1s") or run levels longer (--duration)'
            )


def neuron_row(result: dict) -> dict:
    """The levels.csv columns for one level (empty when it has no neuron summary)."""
    n = result.get("neuron") or {}
    lat, dev = n.get("total_latency_s") or {}, n.get("device_latency_s") or {}
    ex = n.get("executions") or {}
    return {
        "neuron_reports": n.get("reports"),
        "neuroncore_util_mean_pct": n.get("neuroncore_utilization_mean_pct"),
        "neuroncore_util_max_pct": n.get("neuroncore_utilization_max_pct"),
        "neuron_device_mem_max_bytes": (n.get("device_memory_bytes") or {}).get("max"),
        "neuron_host_mem_max_bytes": (n.get("host_memory_bytes") or {}).get("max"),
        "neuron_latency_p50_s": lat.get("p50"),
        "neuron_latency_p99_s": lat.get("p99"),
        "neuron_device_latency_p50_s": dev.get("p50"),
        "neuron_device_latency_p99_s": dev.get("p99"),
        "neuron_completed": ex.get("completed"),
        "neuron_errors": ex.get("errors"),
    }


def describe(n: dict) -> str:
    """One line for the console."""
    if not n.get("reports"):
        return "no neuron-monitor report fell in this level"
    text = f"{n['reports']} report(s)"
    if n["neuroncore_utilization_pct"]:
        text += (
            f"; NeuronCore utilisation mean {n['neuroncore_utilization_mean_pct']:.1f}% over "
            f"{len(n['neuroncore_utilization_pct'])} core(s), max {n['neuroncore_utilization_max_pct']:.1f}%"
        )
    if n["device_memory_bytes"]:
        text += f"; device memory {n['device_memory_bytes']['max'] / 2**20:.0f} MiB"
    lat = n["total_latency_s"] or {}
    if "p50" in lat and "p99" in lat:
        text += f"; runtime latency p50 {lat['p50'] * 1e3:.2f} ms, p99 {lat['p99'] * 1e3:.2f} ms"
    return text


def plot_levels(results: list[dict], path: Path, machine: dict) -> None:
    """neuron.png: per level, NeuronCore utilisation per core, memory, runtime vs client latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results if (r.get("neuron") or {}).get("reports")]
    fig, (ax_u, ax_m, ax_l) = plt.subplots(3, 1, figsize=(7, 9), sharex=True)
    x = list(range(len(rows)))
    cores = sorted({c for r in rows for c in r["neuron"]["neuroncore_utilization_pct"]}, key=_core_key)
    for core in cores:
        stats = [r["neuron"]["neuroncore_utilization_pct"].get(core) for r in rows]
        (line,) = ax_u.plot(x, [s["mean"] if s else float("nan") for s in stats], "o-", label=f"core {core} mean")
        ax_u.plot(x, [s["max"] if s else float("nan") for s in stats], "^:", color=line.get_color(), alpha=0.6)
    ax_u.set_ylabel("NeuronCore utilisation (%)\n(dotted: max)")
    ax_u.set_ylim(0, 105)
    for key, label in (("device_memory_bytes", "device"), ("host_memory_bytes", "host")):
        ax_m.plot(
            x,
            [(r["neuron"].get(key) or {}).get("max", float("nan")) / 2**20 for r in rows],
            "s-",
            label=f"{label} (max)",
        )
    ax_m.set_ylabel("runtime memory (MiB)")
    for key, style, label in (("p50", "o-", "runtime p50"), ("p99", "^--", "runtime p99")):
        ax_l.plot(
            x,
            [(r["neuron"].get("total_latency_s") or {}).get(key, float("nan")) * 1e3 for r in rows],
            style,
            label=label,
        )
    ax_l.plot(x, [r["summary"]["latency_s"]["p50"] * 1e3 for r in rows], "k.:", label="client p50")
    ax_l.set_ylabel("latency (ms)")
    unit = "clients" if rows and rows[0]["mode"] == "closed" else "req/s offered"
    ax_l.set_xticks(x, [f"{r['level']:g}" for r in rows])
    ax_l.set_xlabel(f"level ({unit})")
    for ax in (ax_u, ax_m, ax_l):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    ax_u.set_title("neuron-monitor per benchmark level", fontsize=10)
    fig.text(0.01, 0.005, f"{machine.get('cpu_model', '')}, {machine.get('usable_cores')} cores", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
