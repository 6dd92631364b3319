"""infkit.serve.core.front: nginx in front of a real HTTP/1.1 server on loopback (tests/helpers/echo_server.py). Form
bodies go on as the raw bytes they are, everything else as sent; nginx refuses what breaks its limits; the launcher
lives exactly as long as the server it runs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import psutil
import pytest
import requests

from infkit.errors import InfkitError
from infkit.serve.core.config import ServerConfig, free_ports
from infkit.serve.core.front import Limits, find_nginx, nginx_conf
from infkit.serve.torchserve import server as server_lifecycle
from tests.conftest import ROOT
from tests.test_serve.hostile import exchange, statuses

FORM = "application/x-www-form-urlencoded"
# every byte value, '%' followed by non-hex among them: what makes TorchServe's form decoder throw
AWKWARD = bytes(range(256)) * 40 + b"%zz&=%"


def start_front(tmp_path: Path, *child: str, max_body: int = 8 << 20) -> tuple[subprocess.Popen, int, int]:
    ports = free_ports("127.0.0.1", ("front", "upstream"))
    cmd = [sys.executable, "-m", "infkit.serve.core.front", "--listen", f"127.0.0.1:{ports['front']}"]
    cmd += ["--upstream", f"127.0.0.1:{ports['upstream']}", "--prefix", str(tmp_path / "front")]
    cmd += [
        "--max-body",
        str(max_body),
        "--",
        sys.executable,
        "-m",
        "tests.helpers.echo_server",
        str(ports["upstream"]),
    ]
    proc = subprocess.Popen([*cmd, *child], cwd=ROOT, start_new_session=True)
    end = time.monotonic() + 20
    while time.monotonic() < end:
        try:
            if requests.get(f"http://127.0.0.1:{ports['front']}/ready", timeout=1).status_code == 200:
                return proc, ports["front"], ports["upstream"]
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the front did not answer within 20 s")


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    assert find_nginx(), "nginx is not installed (apt-get install nginx-light): infkit's default front needs it"
    proc, port, upstream = start_front(tmp_path_factory.mktemp("front"))
    yield f"http://127.0.0.1:{port}", port, upstream, proc
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def test_a_form_body_goes_on_as_the_raw_bytes_it_is(front):
    url = front[0]
    for form in (FORM, FORM + "; charset=utf-8", "Application/X-WWW-Form-Urlencoded"):
        r = requests.post(f"{url}/predictions/m", data=AWKWARD, headers={"Content-Type": form}, timeout=10).json()
        assert r["type"] == "application/octet-stream" and r["sha"] == hashlib.sha256(AWKWARD).hexdigest(), r


def test_other_types_and_no_type_pass_as_sent_and_no_infkit_header_is_added(front):
    url = front[0]
    for kind in ("image/png", "application/json", "multipart/form-data; boundary=x", FORM + "x"):
        r = requests.post(f"{url}/p", data=b"abc", headers={"Content-Type": kind}, timeout=10).json()
        assert r["type"] == kind and r["n"] == 3
        assert not [h for h in r["headers"] if h.startswith("x-infkit")]
    raw = exchange("127.0.0.1", front[1], b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab", wait=2)
    assert statuses(raw) == [200] and b'"type": null' in raw


def test_a_chunked_body_of_5_mb_arrives_whole_on_a_kept_alive_connection(front):
    body = os.urandom(5 << 20)
    with requests.Session() as s:
        for _ in range(2):
            r = s.post(
                f"{front[0]}/p", data=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]), timeout=30
            )
            assert r.json()["sha"] == hashlib.sha256(body).hexdigest()


def test_the_limits_are_4xx_from_nginx_in_json(front):
    big = exchange("127.0.0.1", front[1], b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 9000000\r\n\r\n", wait=2)
    assert statuses(big) == [413] and b'"code": 413' in big
    line = exchange("127.0.0.1", front[1], b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", wait=2)
    assert statuses(line) == [414] and b'"code": 414' in line
    freeze = exchange(
        "127.0.0.1", front[1], b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nAB"
    )
    assert statuses(freeze) == [400] and b'"code": 400' in freeze
    te = exchange("127.0.0.1", front[1], b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", wait=2)
    assert statuses(te) == [400]  # nginx's own 501 for an unknown coding: the client's mistake
    assert requests.get(f"{front[0]}/after", timeout=2).status_code == 200


def test_the_config_nginx_accepts_holds_every_limit(tmp_path):
    limits = Limits(max_body=12345, header_timeout=7, max_connections=99)
    text = nginx_conf(("0.0.0.0", 8080), ("127.0.0.1", 8079), tmp_path, limits)
    for line in ("client_max_body_size 12345;", "client_header_timeout 7s;", "worker_connections 99;"):
        assert line in text
    assert "listen 0.0.0.0:8080" in text and "server 127.0.0.1:8079;" in text and "X-Infkit" not in text
    (tmp_path / "temp").mkdir()
    (tmp_path / "logs").mkdir()
    (tmp_path / "nginx.conf").write_text(text)
    nginx = find_nginx()
    assert nginx, "nginx is not installed (apt-get install nginx-light)"
    check = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "/dev/stderr"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    if os.geteuid() == 0:  # never parse client bytes as root
        assert "user nobody" in text


def _group_alive(pgid: int) -> list[str]:
    alive = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(" ".join(p.info["cmdline"] or []))
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


def test_the_launcher_ends_with_its_server_and_passes_its_exit_code(tmp_path):
    proc, _, _ = start_front(tmp_path, "1.5", "3")  # the echo server ends by itself after 1.5 s with code 3
    assert proc.wait(timeout=30) == 3
    time.sleep(0.5)
    assert not _group_alive(proc.pid), "nginx outlived the server it fronts"


def test_sigterm_stops_nginx_and_the_server(tmp_path):
    proc, port, _ = start_front(tmp_path)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) in (0, 128 + signal.SIGTERM, 1)
    time.sleep(0.5)
    assert not _group_alive(proc.pid)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_a_front_that_cannot_listen_stops_the_server_and_says_why(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        upstream = free_ports("127.0.0.1", ("u",))["u"]
        cmd = [sys.executable, "-m", "infkit.serve.core.front", "--listen", f"127.0.0.1:{port}", "--upstream"]
        cmd += [f"127.0.0.1:{upstream}", "--prefix", str(tmp_path), "--", sys.executable, "-m"]
        cmd += ["tests.helpers.echo_server", str(upstream)]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "nginx exited" in out.stdout
    assert "Address already in use" in (tmp_path / "logs" / "nginx-error.log").read_text()


def test_without_nginx_serve_start_names_the_install_and_the_way_out(tmp_path, monkeypatch):
    monkeypatch.setattr(server_lifecycle, "find_nginx", lambda: None)
    store = tmp_path / "store"
    store.mkdir()
    with zipfile.ZipFile(store / "m.mar", "w") as mar:  # an archive that passes the checks before nginx's
        mar.writestr("MAR-INF/MANIFEST.json", json.dumps({"model": {"modelName": "m"}}))
    with pytest.raises(InfkitError) as err:
        server_lifecycle.start(ServerConfig().with_free_ports(), store, tmp_path / "s", models=["m"])
    assert "needs nginx, which is not installed" in str(err.value)
    assert "apt-get install nginx-light" in str(err.value) and "serve.server.front=none" in str(err.value)
    assert not (tmp_path / "s" / "server.json").exists()  # nothing started


def test_front_settings_and_the_old_form_guard_spelling():
    assert ServerConfig.from_mapping({}).front == "nginx"
    assert ServerConfig.from_mapping({"form_guard": False}).front == "none"
    assert ServerConfig.from_mapping({"form_guard": "true", "front": "none"}).front == "nginx"
    with pytest.raises(InfkitError, match="front='apache'; choose nginx or none"):
        ServerConfig.from_mapping({"front": "apache"})
    json.dumps(ServerConfig().__dict__)  # the state file records it
