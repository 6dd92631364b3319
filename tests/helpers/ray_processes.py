"""The processes of a Ray that a test started itself, found by a marker in their environment (Ray's workers start
sessions of their own, so process groups alone do not hold them all), and how the test stops them: never
`ray stop`, which stops every Ray of the user."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil


def marked(variable: str, marker: str) -> list[psutil.Process]:
    """The live processes whose environment sets `variable` to `marker`."""
    out = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(variable) == marker and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            continue
    return out


def stop_marked(procs: list[subprocess.Popen], variable: str, marker: str, grace: float = 5) -> list[psutil.Process]:
    """SIGTERM to the process groups of `procs` (started with start_new_session) and to every marked process (Ray's
    workers start sessions of their own), `grace` seconds for them to end, SIGKILL to what is left of them; returns
    what survived. A test's throw-away cluster gets a short grace: `ray start --block` and the GCS take 20 s or more
    to end on SIGTERM, and nothing of theirs outlives the test's temp folder."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for p in marked(variable, marker):
        try:
            p.terminate()
        except psutil.Error:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and marked(variable, marker):
        for proc in procs:
            proc.poll()
        time.sleep(0.5)
    for p in marked(variable, marker):
        try:
            p.kill()
        except psutil.Error:
            pass
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    time.sleep(1)
    return marked(variable, marker)
