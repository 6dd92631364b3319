"""The load generator's client processes against a tiny real HTTP server on loopback (no TorchServe needed): every
request sent is one record and one request the server counted, whatever the number of processes; the open loop
keeps one schedule across processes; warm-up, the CPU report and Ctrl-C work with child processes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infkit.bench import clients, loadgen, report
from infkit.bench.runner import LevelSpec, run_level

ROOT = Path(__file__).resolve().parents[2]


class CountingServer(ThreadingHTTPServer):
    """Answers POSTs (keep-alive, HTTP/1.1): 415 for the body b"bad", else 200 after `delay` s; counts by status."""

    daemon_threads = True

    def __init__(self, delay: float = 0.002):
        self.delay, self.counts, self.lock = delay, Counter(), threading.Lock()
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/predictions/tiny"

    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status = 415 if body == b"bad" else 200
        time.sleep(self.server.delay)
        answer = json.dumps({"ok": status == 200}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        with self.server.lock:
            self.server.counts[status] += 1

    def log_message(self, *args):
        pass


@pytest.fixture
def tiny_server():
    srv = CountingServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def settled_total(srv: CountingServer, tries: int = 20) -> int:
    """The server's count once its handler threads have finished the last answers."""
    last = srv.total()
    for _ in range(tries):
        time.sleep(0.05)
        now = srv.total()
        if now == last:
            return now
        last = now
    return last


def test_shares_split_the_load_evenly():
    assert [s.threads for s in clients.shares("closed", 7, 64, 3)] == [3, 2, 2]
    assert [(s.first, s.step) for s in clients.shares("closed", 7, 64, 3)] == [(0, 3), (1, 3), (2, 3)]
    assert len(clients.shares("closed", 2, 64, 4)) == 2  # never a process without a client
    assert [s.threads for s in clients.shares("open", 100.0, 8, 2)] == [4, 4]
    assert clients.auto_processes("closed", 1, 64, cores=2) == 1
    assert clients.auto_processes("closed", 32, 64, cores=2) == 2
    assert clients.auto_processes("closed", 256, 64, cores=4) == 4
    assert clients.auto_processes("open", 100, 64, cores=8) == 1
    assert clients.auto_processes("open", 2500, 64, cores=8) == 3


def test_processes_merge_every_record_and_report_their_cpu(tiny_server, tmp_path):
    target = loadgen.Target(tiny_server.url, [b"one", b"two", b"three", b"bad"], token="k", timeout=10)
    spec = LevelSpec(mode="closed", level=6, warmup=0.5, max_duration=1.5, interval=10, processes=2)
    result = run_level(target, spec, echo=lambda _: None)
    records, s = result["records"], result["summary"]
    # nothing dropped, nothing invented: the server counted exactly the records the client processes sent
    assert len(records) == result["sent_including_warmup"] == settled_total(tiny_server) > 20
    assert Counter(r.status for r in records) == tiny_server.counts
    assert s["errors_by_status"] == {"415": s["errors"]} and s["errors"] > 0
    # warm-up flags are the parent's, from one clock shared by all processes
    assert any(r.warmup for r in records) and s["requests"] == sum(not r.warmup for r in records)
    t_first = min(r.intended for r in records)
    warm, measured = [r.intended for r in records if r.warmup], [r.intended for r in records if not r.warmup]
    assert max(warm) < min(measured) and max(warm) - t_first <= 0.5
    assert all(t_first <= r.start <= r.end for r in records)
    assert max(r.intended for r in records) - t_first < 2.0 + 0.5
    c = result["client"]
    assert c["processes"] == 2 and c["failures"] == []
    assert len(c["cpu_by_process_s"]) == 3 and all(x > 0 for x in c["cpu_by_process_s"])  # parent + 2 children
    assert c["cores_used"] == pytest.approx(c["cpu_s"] / c["wall_s"])
    assert c["cpu_ms_per_request"] == pytest.approx(c["cpu_s"] / len(records) * 1e3)
    paths = report.write_load(tmp_path, {}, {"cpu_model": "test", "usable_cores": 1}, [result])
    with paths["levels_csv"].open() as f:
        row = next(csv.DictReader(f))
    assert row["client_processes"] == "2" and float(row["client_cpu_util"]) > 0
    doc = json.loads(paths["json"].read_text())
    assert doc["levels"][0]["client"]["processes"] == 2


@pytest.mark.parametrize("arrivals", ["constant", "poisson"])
def test_open_loop_keeps_one_schedule_across_processes(tiny_server, arrivals):
    target = loadgen.Target(tiny_server.url, [b"x"], timeout=10)
    spec = LevelSpec(
        mode="open", level=40, warmup=0.25, max_duration=1.0, interval=10, arrivals=arrivals, workers=4, processes=2
    )
    result = run_level(target, spec, echo=lambda _: None)
    records = result["records"]
    at = loadgen.schedule(40, arrivals)
    t0 = min(r.intended for r in records)
    expected = [at(i) for i in range(200) if at(i) < 1.25]
    # the two processes sent every other request of the one schedule: together, exactly that schedule
    assert sorted(round(r.intended - t0, 6) for r in records) == [round(x, 6) for x in expected]
    assert len(records) == settled_total(tiny_server)
    assert sum(r.warmup for r in records) == sum(x < 0.25 for x in expected)
    assert result["client"]["processes"] == 2 and result["client"]["failures"] == []


def test_the_bottleneck_guard_reads_the_real_cpu_use(tiny_server):
    target = loadgen.Target(tiny_server.url, [b"x"], timeout=10)
    spec = LevelSpec(mode="closed", level=4, warmup=0, max_duration=1.0, interval=10, processes=1, cpu_limit=0.001)
    c = run_level(target, spec, echo=lambda _: None)["client"]
    assert c["processes"] == 1 and len(c["cpu_by_process_s"]) == 1 and c["cpu_s"] > 0
    assert c["busiest_process_util"] == pytest.approx(c["cpu_s"] / c["wall_s"])
    # a limit any real client exceeds: the guard fires on the measured use, and says the fix
    assert c["bottleneck"] and len(c["warnings"]) == 1 and "another machine" in c["warnings"][0]


def test_ctrl_c_stops_client_processes_and_keeps_their_records(tiny_server):
    def echo(line: str) -> None:  # Ctrl-C at the first progress line, inside the level's loop
        if line.startswith("pid "):
            os.kill(os.getpid(), signal.SIGINT)

    target = loadgen.Target(tiny_server.url, [b"x"], timeout=10)
    spec = LevelSpec(mode="closed", level=4, warmup=0, max_duration=60, interval=0.5, processes=2)
    t0 = time.monotonic()
    result = run_level(target, spec, echo=echo)
    assert result["interrupted"] and result["stopped_by"] == "interrupted (Ctrl-C)"
    assert time.monotonic() - t0 < 30
    assert result["client"]["failures"] == [] and result["client"]["processes"] == 2
    assert len(result["records"]) == settled_total(tiny_server) > 0


@pytest.mark.slow
def test_ctrl_c_from_a_terminal_stops_the_command_and_writes_what_was_measured(tiny_server, tmp_path):
    """A terminal's Ctrl-C signals the whole foreground process group: here the command's own group (the command
    runs in a new session, so nothing else is signalled). Its client processes keep their own groups."""
    image = tmp_path / "x.bin"
    image.write_bytes(b"x")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "src/utils/benchmark.py"),
            "--url",
            tiny_server.url,
            "--images",
            str(image),
            "--num_thread",
            "4",
            "--processes",
            "2",
            "--warmup",
            "0",
            "--duration",
            "60",
            "--interval",
            "0.5",
            "--token",
            "k",
            "--metrics-url",
            "none",
            "--out",
            str(tmp_path / "bench"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    for line in proc.stdout:
        if line.startswith("pid ") or time.monotonic() > deadline:
            break
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "client: 2 processes" in out and "warning: client process" not in out
    (run_dir,) = (tmp_path / "bench").iterdir()
    level = json.loads((run_dir / "results.json").read_text())["levels"][0]
    assert level["interrupted"] and level["client"]["failures"] == []
    assert level["sent_including_warmup"] == settled_total(tiny_server) > 0
    assert len((run_dir / "requests.csv").read_text().splitlines()) == level["sent_including_warmup"] + 1


def test_bad_process_counts_and_limits_are_one_line_errors(capsys):
    from infkit.cli import bench as cli

    for flag, value, said in (
        ("--processes", "0", "give a number of processes >= 1, or auto"),
        ("--processes", "many", "give a number of processes >= 1, or auto"),
        ("--client-cpu-limit", "1.5", "give a fraction in (0, 1]"),
    ):
        with pytest.raises(SystemExit) as stop:
            cli.main(["--url", "http://127.0.0.1:9/predictions/x", flag, value])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert f"'{value}': {said}" in err, err
    assert cli.build_parser().parse_args(["--url", "u", "--processes", "auto"]).processes is None
