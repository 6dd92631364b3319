"""The load of one level, run in this process or spread over client processes, and the client's CPU use.

With P processes, process k runs its share of the clients (closed loop) or of the sender threads (open loop), and
takes request indices k, k+P, k+2P, ...: in the open loop the processes together send exactly the one schedule.
Each child streams its records to the parent every FLUSH seconds; the parent merges them into one Run. A child's
last message says how many records it sent and the CPU it used, so a lost record cannot go unnoticed. Ctrl-C reaches
the parent only, which tells the children to stop; they finish the requests in flight and report."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from infkit.bench import loadgen
from infkit.errors import InfkitError

FLUSH = 0.1  # seconds between a child's record batches
CLIENTS_PER_PROCESS = 16  # closed loop: auto adds a process per this many clients (up to the usable cores)
RATE_PER_PROCESS = 1000.0  # open loop: ... per this many requests per second offered


@dataclass(frozen=True)
class Share:
    """What one client process runs."""

    mode: str  # "closed" or "open"
    threads: int  # closed: clients; open: sender threads
    rate: float  # open loop: the whole schedule's rate (this share sends every `step`-th request of it)
    arrivals: str
    first: int
    step: int
    seed: int = 0


def auto_processes(mode: str, level: float, workers: int, cores: int) -> int:
    """One process for light load; one more per CLIENTS_PER_PROCESS clients (or RATE_PER_PROCESS req/s), at most
    one per usable core."""
    want = math.ceil(level / (CLIENTS_PER_PROCESS if mode == "closed" else RATE_PER_PROCESS))
    return max(1, min(want, cores, int(level) if mode == "closed" else workers))


def shares(
    mode: str, level: float, workers: int, processes: int, arrivals: str = "constant", seed: int = 0
) -> list[Share]:
    """Split the clients (closed) or sender threads (open) over at most `processes` processes, as evenly as can be."""
    n = int(level) if mode == "closed" else workers
    p = max(1, min(processes, n))
    return [Share(mode, n // p + (k < n % p), float(level), arrivals, k, p, seed) for k in range(p)]


def run_share(target: loadgen.Target, share: Share, run: loadgen.Run, t0: float):
    """Start the share's threads (they end at the run's deadline or stop)."""
    if share.mode == "closed":
        return loadgen.closed_loop(target, share.threads, run, share.first, share.step)
    return loadgen.open_loop(
        target, share.rate, share.arrivals, share.threads, run, t0, share.seed, share.first, share.step
    )


class InProcess:
    """One share run by threads of this process; its CPU is the client's."""

    def __init__(self, target: loadgen.Target, share: Share):
        self.target, self.share, self.processes = target, share, 1
        self.cpu_s: list[float] = [0.0]
        self.failures: list[str] = []

    def go(self, run: loadgen.Run, t0: float) -> None:
        self._cpu0 = time.process_time()
        self.threads = run_share(self.target, self.share, run, t0)

    def alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def join(self, timeout: float) -> None:
        for t in self.threads:
            t.join(timeout=timeout)
        self.cpu_s = [time.process_time() - self._cpu0]


class Spawned:
    """Shares run by child processes (`python -m infkit.bench.client_process`, each in its own process group: a
    terminal's Ctrl-C reaches only this process, which tells them to stop); this process merges their records.
    The constructor returns once every child is ready (imports done), so start-up is not part of the level."""

    def __init__(self, target: loadgen.Target, shares_: list[Share], ready_timeout: float = 120.0):
        self.processes = len(shares_)
        self.failures: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.ctrl: list[Connection] = []
        self.data: list[Connection] = []
        try:
            for _ in shares_:
                ctrl_r, ctrl_w = os.pipe()
                data_r, data_w = os.pipe()
                self.ctrl.append(Connection(ctrl_w, readable=False))  # closed by kill() whatever happens next
                self.data.append(Connection(data_r, writable=False))
                try:
                    self.procs.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "infkit.bench.client_process", str(ctrl_r), str(data_w)],
                            pass_fds=(ctrl_r, data_w),
                            stdin=subprocess.DEVNULL,
                            start_new_session=True,
                        )
                    )
                finally:
                    os.close(ctrl_r)
                    os.close(data_w)
            for conn, share in zip(self.ctrl, shares_):  # all are importing already: a send waits for one reader
                conn.send(("setup", target, share))
            self._wait_ready(ready_timeout)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for k, conn in enumerate(self.data):
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise InfkitError(
                    f"client process {k} was not ready within {timeout:g} s; try fewer --processes on a busy machine"
                )
            try:
                msg = conn.recv()
            except EOFError:
                raise InfkitError(
                    f"client process {k} ended while starting (exit code {self.procs[k].wait(5)}): "
                    "its error is printed above"
                ) from None
            if msg[0] != "ready":
                raise InfkitError(f"client process {k} failed while starting: {msg[1]}")

    def go(self, run: loadgen.Run, t0: float) -> None:
        self.run = run
        self._cpu0 = time.process_time()
        self.sent = [0] * self.processes
        self.received = [0] * self.processes
        self.child_cpu = [0.0] * self.processes
        for conn in self.ctrl:
            conn.send(("go", t0, run.warmup_until, run.deadline))
        self.collector = threading.Thread(target=self._collect, daemon=True, name="load-collector")
        self.collector.start()

    def _collect(self) -> None:
        pending = {conn: k for k, conn in enumerate(self.data)}
        told_to_stop = False
        while pending:
            if not told_to_stop and self.run.stop.is_set():
                self._tell_all(("stop",))
                told_to_stop = True
            for conn in wait(list(pending), timeout=0.05):
                k = pending[conn]
                try:
                    msg = conn.recv()
                except EOFError:
                    self.failures.append(
                        f"client process {k} ended without its final report (exit code "
                        f"{self.procs[k].wait(5)}): its last records are missing"
                    )
                    del pending[conn]
                    continue
                if msg[0] == "records":
                    self.run.extend(msg[1], msg[2])
                    self.received[k] += len(msg[1])
                elif msg[0] == "done":
                    self.sent[k], self.child_cpu[k] = msg[1], msg[2]
                    del pending[conn]
                else:
                    self.failures.append(f"client process {k} failed: {msg[1]}")
                    del pending[conn]

    def _tell_all(self, msg: tuple) -> None:
        for conn in self.ctrl:
            try:
                conn.send(msg)
            except OSError:  # that child is gone; the collector reports it
                pass

    def alive(self) -> bool:
        return self.collector.is_alive()

    def join(self, timeout: float) -> None:
        self.collector.join(timeout=timeout)
        self.cpu_s = [time.process_time() - self._cpu0, *self.child_cpu]  # this process (merging) + children
        for k, (sent, got) in enumerate(zip(self.sent, self.received)):
            if sent != got:
                self.failures.append(f"client process {k} sent {sent} requests but {got} records arrived")
        if self.collector.is_alive():
            self.failures.append(f"client processes still busy {timeout:g} s after the stop: stopped by force")
            for proc in self.procs:
                proc.terminate()
            self.collector.join(timeout=5)  # it reads their pipes' end
        self.kill()

    def kill(self) -> None:
        """Close the pipes (a child still waiting reads EOF and ends), then reap the children, terminating any
        that do not end."""
        for conn in self.ctrl + self.data:
            conn.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(timeout=5)


def start(target: loadgen.Target, shares_: list[Share]) -> InProcess | Spawned:
    """In this process for one share; otherwise one child process per share, ready to go."""
    return InProcess(target, shares_[0]) if len(shares_) == 1 else Spawned(target, shares_)
