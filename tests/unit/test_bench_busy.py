"""How busy the machine was: the load average and other processes' CPU, our own process tree's CPU left out (a real
busy child process), and the warning the summaries print when the machine was busy."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from infkit.bench import busy


def snap(load: float, others: float, cores: int = 2) -> dict:
    return {"load_avg_1m": load, "other_processes_cpu_cores": others, "usable_cores": cores}


def test_our_own_busy_child_is_not_other_processes_cpu():
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    child = psutil.Process(spin.pid)
    try:
        while sum(child.cpu_times()[:2]) < 0.02:  # it spins (on a loaded machine a start can take a while)
            time.sleep(0.01)
        spun0 = sum(child.cpu_times()[:2])
        s = busy.snapshot(1.0)
        spun = sum(child.cpu_times()[:2]) - spun0
    finally:
        spin.kill()
        spin.wait()
    # the child's CPU time over the window (however much the machine's load left it) is counted as ours
    assert spun > 0.05 and s["own_cpu_cores"] * s["sample_s"] >= spun - 0.05, (spun, s)
    assert s["other_processes_cpu_cores"] == pytest.approx(
        max(0.0, s["machine_cpu_cores"] - s["own_cpu_cores"]), abs=0.01
    )
    assert s["load_avg_1m"] == pytest.approx(os.getloadavg()[0], abs=1.0) and s["usable_cores"] >= 1
    assert 0.9 < s["sample_s"] < 3


def test_busy_means_load_or_other_processes_above_half_a_core_per_core():
    assert busy.busy_reason(snap(0.9, 0.2)) is None
    assert "load average 1.10 > 0.5 x 2 usable cores" in busy.busy_reason(snap(1.1, 0.0))
    assert "other processes used 1.50 cores" in busy.busy_reason(snap(0.2, 1.5))
    assert busy.busy_reason(snap(3.9, 0.0, cores=8)) is None


def test_only_the_snapshots_before_judge_and_one_warning_says_so():
    assert busy.warnings([snap(0.1, 0.0), snap(0.2, 0.1), None]) == []
    (line,) = busy.warnings([snap(4.0, 0.0), snap(3.0, 0.0)])
    assert line.startswith("warning: the machine was busy before it started (load average 4.00")
    (line,) = busy.warnings([snap(0.1, 0.0), snap(0.1, 1.8), snap(0.1, 0.1)], what="the benchmark")
    assert "before 1 of its 2 steps" in line and "the benchmark's figures" in line
    # after the run started, the load average counts our own work: only other processes' CPU judges
    assert busy.warnings([snap(0.1, 0.0), snap(3.0, 0.2)]) == []
