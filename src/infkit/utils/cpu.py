"""What this CPU offers: the cores this process may use (the one count every thread and worker default comes
from), and its int8 instructions (read from /proc/cpuinfo; recorded with int8 artifacts and benchmarks)."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow), else the
    machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def int8_instructions() -> str:
    """The best x86 int8 dot-product support here: avx512_vnni, avx_vnni, avx512bw, avx2, or unknown (e.g. ARM)."""
    flags = cpu_flags()
    for flag in ("avx512_vnni", "avx_vnni", "avx512bw", "avx2"):
        if flag in flags:
            return flag
    return "unknown"
