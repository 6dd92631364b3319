"""Raw-socket tools for the hostile-client suite: send bytes as a client would, read what comes back, and watch the
server's processes for a core kept busy."""

from __future__ import annotations

import re
import socket
import time

import psutil

#: processes of an infkit server on this machine (either engine, the front, TorchServe's frontend and workers)
SERVER_MARKERS = ("nginx", "org.pytorch.serve", "model_service_worker", "infkit.serve", "raylet", "gcs_server", "ray::")


def exchange(host: str, port: int, data: bytes, wait: float = 3.0, half_close: bool = False) -> bytes:
    """Send `data` on a new connection and read until the server closes it or `wait` seconds pass quietly."""
    with socket.create_connection((host, port), timeout=wait) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:  # the server may close before it has read everything: what it said still counts
            pass
        out = b""
        end = time.monotonic() + wait
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        return out


def statuses(answer: bytes) -> list[int]:
    """Every status line in what came back (pipelined answers have several, each right after the body before it)."""
    return [int(m) for m in re.findall(rb"HTTP/\d\.\d (\d{3}) ", answer)]


def server_processes() -> list[psutil.Process]:
    procs = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if any(m in cmd for m in SERVER_MARKERS):
            procs.append(p)
    return procs


def busy_processes(procs: list[psutil.Process], seconds: float = 1.0, limit: float = 0.9) -> dict[str, float]:
    """{process: share of one core} for those that used more than `limit` of a core over `seconds`."""
    before = {}
    for p in procs:
        try:
            before[p] = sum(p.cpu_times()[:2])
        except psutil.Error:
            continue
    time.sleep(seconds)
    busy = {}
    for p, t0 in before.items():
        try:
            share = (sum(p.cpu_times()[:2]) - t0) / seconds
        except psutil.Error:
            continue
        if share > limit:
            busy[f"{p.pid} {' '.join(p.cmdline())[:80]}"] = round(share, 2)
    return busy
