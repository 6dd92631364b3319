"""infkit.serve.guard in front of a real HTTP/1.1 server on loopback: form bodies go on as raw bytes, everything else
byte for byte (Content-Length, chunked, keep-alive, pipelined), and it lives exactly as long as the server it runs."""

from __future__ import annotations

import hashlib
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infkit.serve.config import free_ports
from infkit.serve.guard import ORIGINAL_TYPE, Unfollowable, rewrite_head

FORM = "application/x-www-form-urlencoded"
# every byte value, '%' followed by non-hex among them: what makes TorchServe's form decoder throw
AWKWARD = bytes(range(256)) * 40 + b"%zz&=%"


class Echo(BaseHTTPRequestHandler):
    """Answers what arrived: path, Content-Type, the guard's copy of the client's, body length and hash."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        doc = {
            "path": self.path,
            "type": self.headers.get("Content-Type"),
            "original": self.headers.get(ORIGINAL_TYPE),
            "n": len(body),
            "sha": hashlib.sha256(body).hexdigest(),
        }
        out = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST

    def log_message(self, *args):
        pass


def wait_listening(port: int, proc: subprocess.Popen) -> None:
    end = time.monotonic() + 20
    while time.monotonic() < end and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"guard not listening on {port} (exit code {proc.poll()})")


def start_guard(port: int, upstream: int, *command: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "infkit.serve.guard", "--listen", f"127.0.0.1:{port}"]
    cmd += ["--upstream", f"127.0.0.1:{upstream}", *(("--", *command) if command else ())]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_listening(port, proc)
    return proc


@pytest.fixture(scope="module")
def guard():
    ports = free_ports(keys=("guard", "upstream"))
    upstream = ThreadingHTTPServer(("127.0.0.1", ports["upstream"]), Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    proc = start_guard(ports["guard"], ports["upstream"])
    yield ports["guard"]
    proc.terminate()
    assert proc.wait(10) == 0
    upstream.shutdown()
    upstream.server_close()


def post(port: int, body, content_type: str | None, path: str = "/predictions/m", conn=None, **kw) -> dict:
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, body=body, headers={"Content-Type": content_type} if content_type else {}, **kw)
    r = conn.getresponse()
    assert r.status == 200
    return json.loads(r.read())


def test_rewrite_head_changes_only_a_form_content_type():
    head = b"POST /predictions/m HTTP/1.1\r\nHost: x\r\ncontent-type: Application/X-WWW-Form-Urlencoded\r\n"
    out, length, chunked = rewrite_head(head + b"Content-Length: 12\r\n\r\n")
    assert out == (
        b"POST /predictions/m HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 12\r\n"
        b"X-Infkit-Content-Type: Application/X-WWW-Form-Urlencoded\r\n\r\n"
    )
    assert (length, chunked) == (12, False)
    png = b"POST / HTTP/1.1\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert rewrite_head(png) == (png, 0, True)
    with pytest.raises(Unfollowable):
        rewrite_head(b"POST / HTTP/1.1\r\nContent-Length: twelve\r\n\r\n")


def test_a_form_body_goes_on_as_raw_bytes_with_the_clients_type_beside_it(guard):
    got = post(guard, AWKWARD, FORM)
    assert got["type"] == "application/octet-stream" and got["original"] == FORM
    assert got["sha"] == hashlib.sha256(AWKWARD).hexdigest()


@pytest.mark.parametrize("content_type", ["image/png", "application/json", "multipart/form-data; boundary=x", None])
def test_other_bodies_pass_untouched(guard, content_type):
    got = post(guard, AWKWARD, content_type)
    assert got["type"] == content_type and got["original"] is None and got["n"] == len(AWKWARD)


def test_chunked_bodies_and_keep_alive(guard):
    conn = http.client.HTTPConnection("127.0.0.1", guard, timeout=10)
    big = AWKWARD * 500  # 5 MB in chunks
    for _ in range(3):  # one connection, several requests
        got = post(guard, iter([big[: len(big) // 2], big[len(big) // 2 :]]), FORM, conn=conn, encode_chunked=True)
        assert got["original"] == FORM and got["sha"] == hashlib.sha256(big).hexdigest()
        assert post(guard, b"x" * 10, "image/png", conn=conn)["n"] == 10


def test_pipelined_requests_are_answered_in_order(guard):
    requests = b"".join(
        f"POST /p{i} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\nContent-Length: {i}\r\n\r\n".encode() + b"%" * i
        for i in (3, 1, 7)
    )
    with socket.create_connection(("127.0.0.1", guard), timeout=10) as sock:
        sock.sendall(requests)
        f = sock.makefile("rb")
        paths = []
        for _ in range(3):
            status = int(f.readline().split()[1])
            headers = dict(line.decode().strip().split(": ", 1) for line in iter(f.readline, b"\r\n"))
            paths.append((json.loads(f.read(int(headers["Content-Length"])))["path"], status))
    assert paths == [("/p3", 200), ("/p1", 200), ("/p7", 200)]


def test_no_upstream_is_a_503_that_says_so():
    ports = free_ports(keys=("guard", "nothing"))
    proc = start_guard(ports["guard"], ports["nothing"])
    try:
        conn = http.client.HTTPConnection("127.0.0.1", ports["guard"], timeout=10)
        conn.request("GET", "/ping")
        r = conn.getresponse()
        assert r.status == 503 and "TorchServe is not answering" in json.loads(r.read())["message"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_guard_ends_with_the_server_it_runs():
    ports = free_ports(keys=("guard", "upstream"))
    code = "import time, sys; time.sleep(1); sys.exit(3)"
    assert start_guard(ports["guard"], ports["upstream"], sys.executable, "-c", code).wait(20) == 3
    proc = start_guard(ports["guard"], ports["upstream"], sys.executable, "-c", "import time; time.sleep(60)")
    proc.send_signal(signal.SIGTERM)  # passed on to the child: both end
    assert proc.wait(20) == 128 + signal.SIGTERM
