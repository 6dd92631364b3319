"""Raw-socket tools for the hostile-client suite: send bytes as a client would, read what comes back, and watch the
server's processes for a core kept busy."""

from __future__ import annotations

import os
import re
import socket
import time

import psutil

from infkit.serve.core.process import group_tree

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


def _marked(p: psutil.Process) -> bool:
    try:
        return any(m in " ".join(p.cmdline()) for m in SERVER_MARKERS)
    except psutil.Error:
        return False


def server_processes(port: int | None = None) -> list[psutil.Process]:
    """The processes of the server that listens on `port`: from the listener up through its server-marked parents
    (nginx -> infkit's launcher; Ray's proxy -> raylet -> infkit's Ray head) to the top one, then that process's
    group and all its descendants. Other servers on the machine (another test's, a user's) are left out. Where no
    marked process on this machine listens on the port (a container's published port), every marked process."""
    top = None
    if port is not None:
        for p in psutil.process_iter():
            try:
                if not _marked(p):
                    continue
                if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in p.net_connections("inet")):
                    top = p
                    break
            except psutil.Error:
                continue
    if top is None:
        return [p for p in psutil.process_iter() if _marked(p)]
    while (parent := top.parent()) is not None and _marked(parent):
        top = parent
    found = {p.pid: p for p in group_tree(os.getpgid(top.pid))}
    found.setdefault(top.pid, top)
    return list(found.values())


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
