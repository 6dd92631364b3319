"""Saved server state is trusted only for the process infkit started: a stale server.json never makes status say
"running", start refuse, or stop signal another program. The processes here are `sleep`s the tests start themselves,
standing in for "another program" and for "what is left of a TorchServe"."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from infkit.errors import InfkitError
from infkit.serve.core.config import ServerConfig
from infkit.serve.torchserve import server

ROOT = Path(__file__).resolve().parents[2]


def write_state(state_dir: Path, pid: int, pgid: int, create_time: float | None) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "pid": pid,
        "pgid": pgid,
        "models": ["m"],
        "failed": {},
        "server": ServerConfig().__dict__,
        "state_dir": str(state_dir),
        "key_file": str(state_dir / "key_file.json"),
        "started_at": "2026-01-01T00:00:00+0000",
    }
    if create_time is not None:
        state["create_time"] = create_time
    path = state_dir / server.STATE_FILE
    path.write_text(json.dumps(state))
    return path


@pytest.fixture
def other_program():
    """A process group leader infkit did not start (a sleep of this test's own)."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("recorded", ["another start time", "no identity (older state file)"])
def test_a_reused_pid_is_not_ours(tmp_path, other_program, recorded):
    created = psutil.Process(other_program.pid).create_time()
    path = write_state(
        tmp_path, other_program.pid, other_program.pid, created - 3600 if recorded == "another start time" else None
    )
    info = server.status(tmp_path)
    assert info["running"] is False and not info["crashed"]
    assert "belongs to another process" in info["message"] and "stale state removed" in info["message"]
    assert "\n" not in info["message"] and not path.exists()

    write_state(tmp_path, other_program.pid, other_program.pid, created - 3600)
    stopped = server.stop(tmp_path)
    assert not stopped and "left alone" in stopped.message
    time.sleep(0.3)
    assert other_program.poll() is None, "stop signalled a process infkit never started"


def test_start_removes_stale_state_instead_of_refusing(tmp_path, other_program):
    write_state(tmp_path / "state", other_program.pid, other_program.pid, 1.0)
    said = []
    (tmp_path / "store").mkdir()
    with pytest.raises(InfkitError, match="no .mar files"):
        server.start(ServerConfig(), tmp_path / "store", tmp_path / "state", log=said.append)
    assert any("stale state removed" in line for line in said), said
    assert other_program.poll() is None


def test_a_crashed_server_is_reported_and_its_state_cleaned(tmp_path):
    gone = subprocess.Popen(["true"], start_new_session=True)
    created = psutil.Process(gone.pid).create_time() if psutil.pid_exists(gone.pid) else time.time()
    gone.wait()
    path = write_state(tmp_path, gone.pid, gone.pid, created)
    info = server.status(tmp_path)
    assert info["running"] is False and info["crashed"] is True
    assert "crashed or was stopped outside infkit" in info["message"] and not path.exists()


def test_remnants_of_our_group_are_still_ours_and_stopped(tmp_path):
    """The leader exited but a member of its group lives on (as java does when the launcher dies)."""
    leader = subprocess.Popen(
        ["sh", "-c", "sleep 300 & echo $!"], start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    created = psutil.Process(leader.pid).create_time()
    member = int(leader.stdout.readline())
    leader.wait()
    write_state(tmp_path, leader.pid, leader.pid, created)
    try:
        assert server.verdict(json.loads((tmp_path / server.STATE_FILE).read_text())) == "ours"
        assert server.stop(tmp_path, timeout=5)
        assert not psutil.pid_exists(member) or psutil.Process(member).status() == psutil.STATUS_ZOMBIE
    finally:
        if psutil.pid_exists(member):
            psutil.Process(member).kill()


def test_already_running_names_the_exact_stop_command(tmp_path):
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        write_state(tmp_path / "my state", proc.pid, proc.pid, psutil.Process(proc.pid).create_time())
        cmd = [
            sys.executable,
            str(ROOT / "src/serve.py"),
            "start",
            f"state_dir={tmp_path / 'my state'}",
            "serve.server.inference_port=9555",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2
        assert f"stop it first: python src/serve.py stop 'state_dir={tmp_path / 'my state'}'" in out.stderr
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_a_state_dir_too_long_for_the_worker_sockets_is_refused_before_start(tmp_path):
    """TorchServe's workers connect over <state_dir>/tmp/.ts.sock.<port>: past the Unix socket path limit every
    worker dies at start and the start would wait its whole timeout. Refused up front, naming the fix."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    store = tmp_path / "store"
    store.mkdir()
    with pytest.raises(InfkitError, match=r"state_dir .* is too long: .* use a shorter state_dir"):
        server.start(ServerConfig().with_free_ports(), store, deep)
    assert not deep.exists()


def test_free_ports_are_distinct_bindable_and_outside_the_range_of_outgoing_connections():
    """A port from the OS's ephemeral range can be taken by another process's next outgoing connection before the
    server binds it (Serve's proxy once failed with "Address already in use" while its Ray made hundreds)."""
    import socket

    from infkit.serve.core.config import RAY_PORT_RANGES, _ephemeral_range, free_ports

    keys = tuple(f"p{i}" for i in range(12))
    ports = free_ports("127.0.0.1", keys)
    low, high = _ephemeral_range()
    assert set(ports) == set(keys) and len(set(ports.values())) == len(keys), ports
    assert all(not low <= p <= high and 10000 <= p < 65536 for p in ports.values()), (ports, low, high)
    assert not [p for p in ports.values() for a, b in RAY_PORT_RANGES if a <= p <= b], ports
    for port in ports.values():
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_free_ports_do_not_follow_a_seeded_random_module():
    """Training seeds Python's `random` (Lightning's seed_everything): two processes that trained with the same seed
    must still be given different ports (two pytest workers' tune servers once got the same ones)."""
    import random

    from infkit.serve.config import free_ports

    keys = tuple(f"p{i}" for i in range(6))
    random.seed(12345)
    first = free_ports("127.0.0.1", keys)
    random.seed(12345)
    assert free_ports("127.0.0.1", keys) != first


@pytest.mark.parametrize("ignores_term", [False, True], ids=["ends-on-SIGTERM", "needs-SIGKILL"])
def test_terminate_escalates_to_sigkill_and_reaps_its_child(ignores_term):
    """core.process.terminate, which both engines' stop use: SIGTERM first, SIGKILL only for what outlived the wait."""
    from infkit.serve.core.process import terminate

    code = "import signal, time\n" + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignores_term else "")
    child = subprocess.Popen(
        [sys.executable, "-c", code + "print('up', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE
    )
    assert child.stdout.readline() == b"up\n"  # its SIGTERM handler is in place
    sent = []

    def send(sig):
        sent.append(sig)
        child.send_signal(sig)
        return True

    def gone():
        try:
            return psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    t0 = time.monotonic()
    assert terminate(send, gone, child.pid, timeout=1.0)
    assert sent == ([15, 9] if ignores_term else [15])
    assert time.monotonic() - t0 < (5 if ignores_term else 2)
    with pytest.raises(psutil.NoSuchProcess):  # reaped, not left a zombie
        psutil.Process(child.pid).status()


def test_terminate_reports_what_survives_sigkill_and_stops_when_nothing_is_left():
    from infkit.serve.core.process import terminate

    assert terminate(lambda sig: False, lambda: False, None, timeout=0.1)  # nothing to signal: done
    sent = []
    t0 = time.monotonic()
    assert not terminate(lambda sig: sent.append(sig) or True, lambda: False, None, timeout=0.2, kill_wait=0.3)
    assert sent == [15, 9] and 0.5 <= time.monotonic() - t0 < 2
