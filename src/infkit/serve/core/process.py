"""The state file of a server infkit started, and whether the process it names is still that server.

server.json records the pid, process group and start time of the process `start` launched; the state is trusted
only while the pid still names that same process, so a reused pid is never signalled."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

STATE_FILE = "server.json"


def read_state(state_dir: Path) -> dict | None:
    try:
        return json.loads((Path(state_dir) / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:  # a zombie has ended
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def group_tree(pgid: int) -> list[psutil.Process]:
    """The live members of process group `pgid` and all their descendants (Ray's workers, for one, start sessions
    of their own under the group's processes)."""
    found = {p.pid: p for p in group_members(pgid)}
    for p in list(found.values()):
        try:
            for child in p.children(recursive=True):
                found.setdefault(child.pid, child)
        except psutil.Error:
            continue
    return list(found.values())


def verdict(state: dict) -> str:
    """'ours' when the process group infkit started still runs; 'gone' when nothing of it is left; 'foreign' when
    the recorded pid now belongs to another process. A process group id cannot be handed out again while any
    member of the group lives, so remnants of a group whose leader is gone are still ours."""
    try:
        leader = psutil.Process(int(state["pid"]))
        created, cmdline = leader.create_time(), leader.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return "ours" if group_members(int(state["pgid"])) else "gone"
    except psutil.AccessDenied:
        return "foreign"
    recorded = state.get("create_time")
    if recorded is None:  # state written before identities were recorded
        return "ours" if any("torchserve" in part for part in cmdline) else "foreign"
    return "ours" if abs(created - float(recorded)) < 0.05 else "foreign"


#: server.json's "engine" -> how messages name it (a state without one was written by TorchServe's lifecycle)
ENGINE_LABELS = {"torchserve": "TorchServe", "ray": "Ray Serve"}


def forget(state_dir: Path, state: dict, why: str) -> str:
    (Path(state_dir) / STATE_FILE).unlink(missing_ok=True)
    started = state.get("started_at", "?")
    if why == "foreign":
        return (
            f"not running: pid {state['pid']} (recorded at start {started}) now belongs to another process, "
            "which was left alone; stale state removed"
        )
    return (
        f"not running: {ENGINE_LABELS.get(state.get('engine', 'torchserve'), 'the server')} started {started} "
        f"(pid {state['pid']}) is gone — it crashed or was stopped "
        f"outside infkit (logs: {Path(state_dir) / 'logs'}); stale state removed"
    )


def running_state(state_dir: Path, judge=verdict) -> tuple[dict, None] | tuple[None, dict]:
    """(state, None) when the server saved in state_dir is running and ours (`judge(state) == "ours"`); (None, the
    status to report) when nothing is saved, or it crashed or is not ours: its saved state is then forgotten."""
    state = read_state(state_dir)
    if not state:
        return None, {"running": False, "state_dir": str(state_dir)}
    why = judge(state)
    if why != "ours":
        message = forget(state_dir, state, why)
        return None, {"running": False, "crashed": why == "gone", "state_dir": str(state_dir), "message": message}
    return state, None


def terminate(
    send: Callable[[int], bool], gone: Callable[[], bool], child: int | None, timeout: float, kill_wait: float = 10.0
) -> bool:
    """SIGTERM, then up to `timeout` s for `gone()`; then SIGKILL and up to `kill_wait` s more. `send(sig)` signals
    what is left (false: nothing was there to signal); `child`, when this process started the server, is reaped as it
    ends. True once everything is gone; false if something survived SIGKILL."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, kill_wait)):
        if not send(sig):
            return True
        end = time.monotonic() + wait
        while True:
            if child:
                try:  # reap our own child when stop runs in the process that started it
                    os.waitpid(child, os.WNOHANG)
                except ChildProcessError:
                    pass
            if gone():
                return True
            if time.monotonic() >= end:
                break
            time.sleep(0.2)
    return False


@dataclass
class Stopped:
    """What an engine's stop did: true when something of ours was running and was stopped."""

    was_running: bool
    message: str

    def __bool__(self) -> bool:
        return self.was_running


def log_bytes(log_dir: Path) -> int:
    """Bytes in the log folder (all files, rotated ones included)."""
    return sum(p.stat().st_size for p in Path(log_dir).glob("*") if p.is_file())
