"""Load against an HTTP endpoint in threads: closed loop (N clients) or open loop (a rate).

Each thread keeps its own keep-alive connection (http1.Connection: about the client CPU per request of `hey`, a
an eighth of requests'). Every request becomes a Record; nothing is dropped, whatever the status. Stopping (deadline,
Ctrl-C) is cooperative through one Event. clients.py spreads the same loops over several processes: the loops take
every `step`-th request index from `first`, so processes together send exactly what one would."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from infkit.bench.http1 import Connection
from infkit.bench.record import Record
from infkit.serve.core.auth import auth_header


@dataclass
class Target:
    url: str
    bodies: Sequence[bytes]
    token: str | None = None
    timeout: float = 60.0

    def connect(self) -> Connection:
        headers = {"Content-Type": "application/octet-stream", **auth_header(self.token)}
        return Connection(self.url, headers, self.timeout)

    def send(self, conn: Connection, i: int) -> int:
        return conn.post(self.bodies[i % len(self.bodies)])


def _ok(status: int) -> bool:
    return 200 <= status < 300


@dataclass
class Run:
    """Shared state of one load run: the records and the stop signal."""

    warmup_until: float
    deadline: float
    stop: threading.Event = field(default_factory=threading.Event)
    records: list[Record] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: each failing status's first answer: status -> (when it ended, what it said)
    first_errors: dict[int, tuple[float, str]] = field(default_factory=dict)

    def add(self, intended: float, start: float, end: float, status: int, error: str | None = None) -> None:
        rec = Record(intended, start, end, status, warmup=intended < self.warmup_until)
        with self.lock:
            self.records.append(rec)
            if not _ok(status):
                self._note(status, end, error or "")

    def _note(self, status: int, end: float, text: str) -> None:
        seen = self.first_errors.get(status)
        if seen is None or end < seen[0]:
            self.first_errors[status] = (end, text)

    def extend(
        self, rows: Sequence[tuple[float, float, float, int]], errors: dict[int, tuple[float, str]] | None = None
    ) -> None:
        """Records sent by a client process as (intended, start, end, status), and its first error per status."""
        recs = [Record(i, s, e, st, warmup=i < self.warmup_until) for i, s, e, st in rows]
        with self.lock:
            self.records.extend(recs)
            for status, (end, text) in (errors or {}).items():
                self._note(status, end, text)

    def errors(self) -> dict[int, tuple[float, str]]:
        with self.lock:
            return dict(self.first_errors)

    def snapshot(self) -> list[Record]:
        with self.lock:
            return list(self.records)

    def drain(self) -> list[Record]:
        """The records so far, removed (a client process ships them to its parent)."""
        with self.lock:
            out, self.records = self.records, []
        return out

    def over(self) -> bool:
        return self.stop.is_set() or time.perf_counter() >= self.deadline


def closed_loop(target: Target, threads: int, run: Run, first: int = 0, step: int = 1) -> list[threading.Thread]:
    """N clients, each sending its next request as soon as the previous answer arrived."""
    counter = itertools.count(first, step)

    def client():
        conn = target.connect()
        while not run.over():
            i = next(counter)
            t0 = time.perf_counter()
            status = target.send(conn, i)
            run.add(t0, t0, time.perf_counter(), status, None if _ok(status) else conn.error[1])
        conn.close()

    return _start(client, threads)


def schedule(rate: float, arrivals: str, seed: int = 0) -> Callable[[int], float]:
    """Offset in seconds of the i-th intended send: i/rate, or a Poisson process of that rate."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if arrivals == "constant":
        return lambda i: i / rate
    if arrivals != "poisson":
        raise ValueError(f"arrivals must be constant or poisson, got {arrivals!r}")
    rng = random.Random(seed)
    offsets = [0.0]
    lock = threading.Lock()

    def at(i: int) -> float:
        with lock:
            while len(offsets) <= i:
                offsets.append(offsets[-1] + rng.expovariate(rate))
            return offsets[i]

    return at


def open_loop(
    target: Target,
    rate: float,
    arrivals: str,
    workers: int,
    run: Run,
    t0: float,
    seed: int = 0,
    first: int = 0,
    step: int = 1,
) -> list[threading.Thread]:
    """Requests sent on a schedule, whatever the server does. Latency counts from the intended
    send time, so a stalled server cannot hide behind waiting clients (coordinated omission); when
    every worker is busy, requests start late and the lag is recorded against the client."""
    at = schedule(rate, arrivals, seed)
    counter = itertools.count(first, step)

    def worker():
        conn = target.connect()
        while not run.stop.is_set():
            i = next(counter)
            intended = t0 + at(i)
            if intended >= run.deadline:
                break
            delay = intended - time.perf_counter()
            if delay > 0 and run.stop.wait(delay):
                break
            start = time.perf_counter()
            status = target.send(conn, i)
            run.add(intended, start, time.perf_counter(), status, None if _ok(status) else conn.error[1])
        conn.close()

    return _start(worker, workers)


def _start(fn, n: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=fn, daemon=True, name=f"load-{k}") for k in range(n)]
    for t in threads:
        t.start()
    return threads
