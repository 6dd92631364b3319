"""How busy the machine was around a measurement: the 1-minute load average and the CPU used by processes other
than this one and its children (psutil: the machine's busy CPU seconds minus our process tree's), sampled over a
short window before and after each run and each level. A figure measured beside someone else's build is not a
figure of the model: the summary warns when the machine was busy."""

from __future__ import annotations

import os
import time

import psutil

from infkit.utils.cpu import usable_cores

#: busy above this 1-minute load average per usable core (or this many cores' worth of other processes' CPU)
BUSY_PER_CORE = 0.5
SAMPLE_S = 0.5


def _machine_busy_s() -> float:
    """CPU seconds the machine has spent on anything but idling, over every CPU, since boot."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def _tree_cpu_s() -> dict[int, float]:
    """CPU seconds of this process (its reaped children included) and of each live descendant, by pid."""
    me = psutil.Process()
    out = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        out[proc.pid] = t.user + t.system + (t.children_user + t.children_system if proc.pid == me.pid else 0.0)
    return out


def snapshot(sample_s: float = SAMPLE_S) -> dict:
    """The load average now, and the cores' worth of CPU other processes used over the next `sample_s` seconds."""
    load1 = os.getloadavg()[0]
    cores = usable_cores()
    t0, busy0, ours0 = time.perf_counter(), _machine_busy_s(), _tree_cpu_s()
    time.sleep(sample_s)
    wall, busy1, ours1 = time.perf_counter() - t0, _machine_busy_s(), _tree_cpu_s()
    wall = max(wall, 1e-9)
    ours = max(0.0, sum(c - ours0.get(pid, 0.0) for pid, c in ours1.items()))
    machine = max(0.0, busy1 - busy0)
    return {
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_avg_1m": round(load1, 3),
        "load_per_core": round(load1 / cores, 3),
        "other_processes_cpu_cores": round(max(0.0, machine - ours) / wall, 3),
        "machine_cpu_cores": round(machine / wall, 3),
        "own_cpu_cores": round(ours / wall, 3),
        "usable_cores": cores,
        "logical_cores": psutil.cpu_count() or cores,
        "sample_s": round(wall, 3),
    }


def around(before: dict, after: dict) -> dict:
    return {"before": before, "after": after}


def busy_reason(snap: dict, load: bool = True) -> str | None:
    """Why this snapshot says the machine was busy, or None. `load=False` judges by other processes' CPU only (the
    load average of a snapshot taken after our own work started counts that work too)."""
    cores = snap["usable_cores"]
    if load and snap["load_avg_1m"] > BUSY_PER_CORE * cores:
        return f"load average {snap['load_avg_1m']:.2f} > {BUSY_PER_CORE:g} x {cores} usable cores"
    if snap["other_processes_cpu_cores"] > BUSY_PER_CORE * cores:
        return (
            f"other processes used {snap['other_processes_cpu_cores']:.2f} cores > {BUSY_PER_CORE:g} x {cores} "
            "usable cores"
        )
    return None


def warnings(befores: list[dict | None], what: str = "the run") -> list[str]:
    """One warning when the snapshot before the run (load average or other processes' CPU), or one before a later
    step (other processes' CPU: the load average then counts our own earlier steps), says the machine was busy."""
    reasons = [(k, r) for k, s in enumerate(befores) if s and (r := busy_reason(s, load=k == 0))]
    if not reasons:
        return []
    k, reason = reasons[0]
    where = "before it started" if k == 0 else f"before {len(reasons)} of its {len(befores) - 1} steps"
    return [
        f"warning: the machine was busy {where} ({reason}): other work shares the CPU, so {what}'s figures are "
        "lower and noisier than this machine's; measure again with nothing else running"
    ]
