"""What this CPU offers for int8 inference (read from /proc/cpuinfo; recorded with int8 artifacts and benchmarks)."""

from __future__ import annotations


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
