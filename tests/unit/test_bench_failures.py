"""Only work done counts: the benchmark against a tiny real HTTP server on loopback that answers TorchServe's 404,
503s now and then, or 401 without the right token. Failed requests are never throughput; they are reported by
status with the error rate and the first error's text; a level above --max-error-rate fails the run (exit 1)."""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infkit.bench.failures import describe
from infkit.bench.http1 import Connection
from infkit.cli import bench as cli

NOT_FOUND = {"code": 404, "type": "ModelNotFoundException", "message": "Model not found: nope"}
TOKEN = "s3cret"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        route = self.path.rsplit("/", 1)[-1]
        if route == "nope":
            self._answer(404, json.dumps(NOT_FOUND).encode())
        elif route == "flaky":  # every 10th request: 503, as TorchServe with a full queue
            n = next(self.server.counter)
            self._answer(503 if n % 10 == 9 else 200, b'{"code": 503, "type": "ServiceUnavailableException"}')
        elif route == "auth":
            ok = self.headers.get("Authorization") == f"Bearer {TOKEN}"
            self._answer(200 if ok else 401, b'{"ok": true}' if ok else b"Token Authorization failed")
        elif route == "chunked":
            body = b"5\r\nsorry\r\n6\r\n, full\r\n0\r\n\r\n"
            head = b"HTTP/1.1 507 Insufficient Storage\r\nTransfer-Encoding: chunked\r\n\r\n"
            self.wfile.write(head + body)
        else:
            self._answer(200, b"{}")

    def _answer(self, status: int, body: bytes) -> None:
        head = f"HTTP/1.1 {status} \r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        self.wfile.write(head.encode() + body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.counter = itertools.count()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/predictions"
    srv.shutdown()
    srv.server_close()


def bench(tmp_path, url, *extra):
    tmp_path.mkdir(parents=True, exist_ok=True)
    image = tmp_path / "x.bin"
    image.write_bytes(b"x")
    argv = ["--url", url, "--images", str(image), "--num_thread", "2", "--warmup", "0.2", "--duration", "1"]
    argv += ["--interval", "5", "--metrics-url", "none", "--out", str(tmp_path / "bench"), *extra]
    code = cli.main(argv)
    (run_dir,) = (tmp_path / "bench").iterdir()
    return code, json.loads((run_dir / "results.json").read_text()), run_dir


def test_error_bodies_are_kept_and_named():
    assert describe(404, json.dumps(NOT_FOUND)) == "404 ModelNotFoundException: Model not found: nope"
    assert describe(503, "  queue\n full ") == "503 queue full"
    assert describe(0, "ConnectionRefusedError: [Errno 111] Connection refused").startswith("no answer (Connection")
    assert len(describe(500, "x" * 1000)) < 220


def test_the_client_keeps_the_start_of_an_error_body(server):
    conn = Connection(f"{server}/chunked", {}, timeout=5)
    assert conn.post(b"x") == 507 and conn.error == (507, "sorry, full")
    conn = Connection(f"{server}/nope", {}, timeout=5)
    assert conn.post(b"x") == 404 and json.loads(conn.error[1]) == NOT_FOUND
    assert Connection("http://127.0.0.1:9/p", {}, timeout=5).post(b"x") == 0


@pytest.mark.parametrize("processes", ["1", "2"])
def test_every_request_failing_is_zero_throughput_exit_1_and_names_the_first_error(server, tmp_path, capsys, processes):
    code, doc, run_dir = bench(tmp_path, f"{server}/nope", "--processes", processes)
    assert code == 1
    (level,) = doc["levels"]
    s = level["summary"]
    assert s["requests"] > 5 and s["ok"] == 0 and s["errors_by_status"] == {"404": s["requests"]}
    assert s["throughput_rps"] == 0.0 and s["error_rate"] == 1.0 and s["responses_rps"] > 0
    assert level["first_error"] == "404 ModelNotFoundException: Model not found: nope"
    assert level["failed"] and "every one of" in doc["outcome"]
    err = capsys.readouterr().err
    assert "0 successful req/s; first error: 404 ModelNotFoundException: Model not found: nope" in err
    assert "404 ModelNotFoundException" in (run_dir / "levels.csv").read_text()


def test_a_level_above_the_error_rate_limit_fails_and_one_within_passes(server, tmp_path, capsys):
    code, doc, _ = bench(tmp_path / "strict", f"{server}/flaky", "--processes", "1")
    (level,) = doc["levels"]
    s = level["summary"]
    assert code == 1 and level["failed"].startswith("error rate") and s["ok"] > 0
    assert s["errors_by_status"] == {"503": s["errors"]} and 0.05 < s["error_rate"] < 0.15
    # throughput is the 2xx answers only
    assert s["throughput_rps"] == pytest.approx(s["ok"] / s["duration_s"])
    assert s["throughput_rps"] < s["responses_rps"]
    assert "1 level(s) failed" in capsys.readouterr().err
    code, doc, _ = bench(tmp_path / "lenient", f"{server}/flaky", "--processes", "1", "--max-error-rate", "0.2")
    assert code == 0 and doc["levels"][0]["failed"] is None and doc["outcome"] is None


def test_old_flag_spellings_still_work(server, tmp_path):
    """--key_file, --metrics_url, --stable_windows and --client_cpu_limit: the benchmark's flags since its first
    version, beside the dashed spellings."""
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"inference": {"key": TOKEN}, "management": {"key": "m"}}))
    code, doc, _ = bench(
        tmp_path / "old",
        f"{server}/auth",
        "--key_file",
        str(key_file),
        "--metrics_url",
        "none",
        "--stable_windows",
        "4",
        "--client_cpu_limit",
        "0.9",
    )
    assert code == 0 and doc["levels"][0]["summary"]["errors"] == 0 and doc["levels"][0]["summary"]["ok"] > 0
    assert doc["config"]["key_file"] == str(key_file) and doc["config"]["stable_windows"] == 4
    assert doc["config"]["client_cpu_limit"] == 0.9
    # without the key: every request is a 401, and the run says so
    code, doc, _ = bench(tmp_path / "nokey", f"{server}/auth", "--key-file", str(tmp_path / "none.json"))
    assert code == 1 and doc["levels"][0]["first_error"] == "401 Token Authorization failed"


def test_results_hold_the_machine_load_before_and_after(server, tmp_path):
    code, doc, run_dir = bench(tmp_path, f"{server}/ok")
    assert code == 0
    for snap in (
        doc["machine_load"]["before"],
        doc["machine_load"]["after"],
        doc["levels"][0]["machine_load"]["before"],
    ):
        assert snap["load_avg_1m"] >= 0 and snap["usable_cores"] >= 1 and snap["sample_s"] > 0.4
        assert snap["other_processes_cpu_cores"] >= 0
    assert "load_avg_1m_before" in (run_dir / "levels.csv").read_text().splitlines()[0]
