"""Hostile clients against a live server's inference port: request smuggling shapes, bad lengths and chunk sizes,
oversized parts, garbage, odd methods and protocols, cut-short bodies, slow and idle connections, pipelining and
half-close. After each case a normal request on a new connection gets 200 within 2 s, no malformed request gets a
5xx, and no server process keeps a core busy (docs/security.md lists the cases and what the front answers)."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
import requests

from tests.test_serve.hostile import busy_processes, exchange, server_processes, statuses

BIG = 70 * 1024  # past every header limit of the front (4 buffers of 16 KiB)


def _cases(model: str, auth: str) -> dict[str, bytes]:
    """name -> the raw bytes a client sends (requests for /predictions/<model>, with a valid key where it helps)."""
    p = f"POST /predictions/{model} HTTP/1.1\r\nHost: x\r\n{auth}".encode()
    g = f"GET /ping HTTP/1.1\r\nHost: x\r\n{auth}".encode()
    te = b"Transfer-Encoding: chunked\r\n"
    return {
        "negative chunk size (the 60-byte freeze)": p + te + b"\r\n-3\r\nAB",
        "signed chunk size": p + te + b"\r\n+5\r\nhello\r\n0\r\n\r\n",
        "0x chunk size": p + te + b"\r\n0x5\r\nhello\r\n0\r\n\r\n",
        "overflowing chunk size": p + te + b"\r\nFFFFFFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
        "non-hex chunk size": p + te + b"\r\nzz\r\nhello\r\n0\r\n\r\n",
        "chunk data longer than its size": p + te + b"\r\n5\r\nhelloXX\r\n0\r\n\r\n",
        "CL.TE": p + b"Content-Length: 6\r\n" + te + b"\r\n0\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n",
        "TE.CL": p + te + b"Content-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        "TE.TE two encodings": p + te + b"Transfer-Encoding: x\r\n\r\n0\r\n\r\n",
        "TE with a space before the colon": p + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        "TE xchunked": p + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        "TE chunked, gzip": p + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        "TE gzip only": p + b"Transfer-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd",
        "TE behind a tab": p + b"Transfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n",
        "TE in an obs-fold": p + b"X-A: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "two different Content-Lengths": p + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "two equal Content-Lengths": p + b"Content-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
        "negative Content-Length": p + b"Content-Length: -4\r\n\r\nabcd",
        "signed Content-Length": p + b"Content-Length: +4\r\n\r\nabcd",
        "hex Content-Length": p + b"Content-Length: 0x4\r\n\r\nabcd",
        "overflowing Content-Length": p + b"Content-Length: 99999999999999999999999999\r\n\r\nabcd",
        "Content-Length past the body limit": p + b"Content-Length: 999999999\r\n\r\nabcd",
        "body cut short": p + b"Content-Length: 1000\r\n\r\nabcd",
        "chunked body cut short": p + te + b"\r\n100\r\nabcd",
        "bare LF line ends": p.replace(b"\r\n", b"\n") + b"Content-Length: 4\n\nabcd",
        "obs-fold header": p + b"X-Folded: a\r\n b\r\nContent-Length: 4\r\n\r\nabcd",
        "oversized request line": b"GET /" + b"a" * BIG + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "oversized header": g + b"X-Big: " + b"a" * BIG + b"\r\n\r\n",
        "too many headers": g + b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 1000) for i in range(200)) + b"\r\n",
        "oversized trailer": p + te + b"\r\n4\r\nabcd\r\n0\r\nX-T: " + b"a" * BIG + b"\r\n\r\n",
        "oversized chunk extension": p + te + b"\r\n4;ext=" + b"a" * BIG + b"\r\nabcd\r\n0\r\n\r\n",
        "NUL in the request line": b"GET /pi\x00ng HTTP/1.1\r\nHost: x\r\n\r\n",
        "NUL in a header": g + b"X-N: a\x00b\r\n\r\n",
        "garbage bytes": bytes(range(256)) * 16,
        "HTTP/0.9": b"GET /ping\r\n",
        "unknown HTTP version": b"GET /ping HTTP/9.9\r\nHost: x\r\n\r\n",
        "unknown method": f"BREW /predictions/{model} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\n\r\n".encode(),
        "TRACE": b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT": b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
        "Upgrade to websocket": g + b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        "Upgrade to h2c": g
        + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 64,
        "no Host in HTTP/1.1": b"GET /ping HTTP/1.1\r\n\r\n",
        "absolute URI of another host": b"GET http://example.invalid/ping HTTP/1.1\r\nHost: x\r\n\r\n",
        "header without a colon": g + b"NoColonHere\r\n\r\n",
        "space in a header name": p + b"Content Length: 4\r\n\r\nabcd",
        "unknown Expect": p + b"Expect: 999-nonsense\r\nContent-Length: 4\r\n\r\nabcd",
        "multipart without its boundary": p + b"Content-Type: multipart/form-data; boundary=zz\r\n"
        b"Content-Length: 20\r\n\r\n--yy\r\nnot a part\r\n\r\n",
        "form type with %-junk": p + b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 9\r\n\r\n%zz&=%\xff\x00",
        "client-sent X-Infkit header": p + b"X-Infkit-Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 7\r\n\r\na=b&c=d",
    }


CASE_NAMES = list(_cases("m", ""))


@pytest.fixture(scope="module")
def server(live):
    """The live server's processes on this machine, found once: 'no core kept busy' must compare something."""
    procs = server_processes(live.http_port) if live.host in ("127.0.0.1", "localhost", "::1", "0.0.0.0") else []
    if live.host in ("127.0.0.1", "localhost") and not procs:
        pytest.fail(f"no server process found on this machine for {live.inference}: the busy check compares nothing")
    return procs


def normal_request_ok(live) -> float:
    """A normal prediction on a new connection: 200 within 2 s; returns the seconds it took."""
    t0 = time.monotonic()
    r = requests.post(
        f"{live.inference}/predictions/{live.model}",
        data=live.images[0].read_bytes(),
        headers={**live.headers, "Content-Type": "image/png", "Connection": "close"},
        timeout=2,
    )
    took = time.monotonic() - t0
    assert r.status_code == 200 and took < 2, (r.status_code, r.text[:200], took)
    return took


def check_after(live, procs) -> None:
    normal_request_ok(live)
    busy = busy_processes(procs, seconds=0.5)
    assert not busy, f"server processes busy after the case: {busy}"


@pytest.mark.parametrize("case", CASE_NAMES)
def test_a_hostile_request_gets_no_5xx_and_the_server_stays_up(live, server, case):
    auth = f"Authorization: Bearer {live.token}\r\n" if live.token else ""
    answer = exchange(live.host, live.http_port, _cases(live.model, auth)[case], wait=1.5)
    codes = statuses(answer)
    assert all(c < 500 for c in codes), f"{case}: {answer[:300]!r}"
    check_after(live, server)


def test_the_case_list_is_at_least_forty():
    assert len(CASE_NAMES) >= 40 and len(set(CASE_NAMES)) == len(CASE_NAMES)


def test_slow_headers_beside_normal_traffic(live, server):
    """Three clients dribble a head a byte at a time while normal requests keep getting their 200 in time."""
    stop = threading.Event()

    def dribble():
        with socket.create_connection((live.host, live.http_port), timeout=10) as s:
            for byte in b"POST /predictions/x HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                if stop.is_set():
                    return
                try:
                    s.send(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.05)

    threads = [threading.Thread(target=dribble, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(10):
            normal_request_ok(live)
            time.sleep(0.2)
    finally:
        stop.set()
    check_after(live, server)


def test_thousands_of_idle_connections_leave_room_for_a_normal_request(live, server):
    n = int(os.environ.get("INFKIT_HOSTILE_IDLE", "2000"))
    idle = []
    try:
        for _ in range(n):
            idle.append(socket.create_connection((live.host, live.http_port), timeout=5))
        normal_request_ok(live)
    finally:
        for s in idle:
            s.close()
    check_after(live, server)


def raw_prediction(live, close: bool = False) -> bytes:
    """A normal prediction of the first image as the bytes a client sends (with `Connection: close` if asked)."""
    auth = f"Authorization: Bearer {live.token}\r\n" if live.token else ""
    image = live.images[0].read_bytes()
    connection = "Connection: close\r\n" if close else ""
    return (
        f"POST /predictions/{live.model} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: image/png\r\n"
        f"Content-Length: {len(image)}\r\n{connection}\r\n"
    ).encode() + image


def test_fifty_pipelined_requests_are_answered_in_order(live, server):
    answer = b""
    with socket.create_connection((live.host, live.http_port), timeout=30) as s:
        s.sendall(raw_prediction(live) * 49 + raw_prediction(live, close=True))
        while chunk := s.recv(65536):
            answer += chunk
    assert statuses(answer) == [200] * 50, statuses(answer)
    check_after(live, server)


def test_half_close_after_a_full_request_still_gets_the_answer(live, server):
    answer = exchange(live.host, live.http_port, raw_prediction(live, close=True), wait=10, half_close=True)
    assert statuses(answer) == [200], answer[:300]
    check_after(live, server)
