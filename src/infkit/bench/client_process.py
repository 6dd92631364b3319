"""A client process of the load generator: `python -m infkit.bench.client_process <control fd> <data fd>`, started by
infkit.bench.clients.Spawned with two pipes (never a command of its own)."""

from __future__ import annotations

import os
import sys
import time
import traceback
from multiprocessing.connection import Connection

from infkit.bench import loadgen
from infkit.bench.clients import FLUSH, run_share


def child(ctrl: Connection, data: Connection) -> None:
    """A client process: take its share, say ready, wait for go, run the share's threads, ship records every FLUSH s,
    report how many it sent and its CPU seconds, and end."""
    try:
        _, target, share = ctrl.recv()
        data.send(("ready", os.getpid()))
        msg = ctrl.recv()
        if msg[0] != "go":
            data.send(("done", 0, 0.0))
            return
        _, t0, warmup_until, deadline = msg
        run = loadgen.Run(warmup_until=warmup_until, deadline=deadline)
        cpu0 = time.process_time()
        threads = run_share(target, share, run, t0)
        sent, listening = 0, True
        while any(t.is_alive() for t in threads):
            if listening and ctrl.poll(FLUSH):
                try:
                    ctrl.recv()  # "stop"
                except EOFError:  # the parent is gone: stop as well
                    listening = False
                run.stop.set()
            elif not listening:
                time.sleep(FLUSH)
            sent += _ship(run, data)
        for t in threads:
            t.join()
        sent += _ship(run, data)
        data.send(("done", sent, time.process_time() - cpu0))
    except (EOFError, BrokenPipeError):
        pass  # the parent is gone: nobody to report to
    except Exception as exc:
        traceback.print_exc()
        data.send(("error", f"{type(exc).__name__}: {exc}"))


def _ship(run: loadgen.Run, data) -> int:
    recs = run.drain()
    if recs:
        data.send(("records", [(r.intended, r.start, r.end, r.status) for r in recs], run.errors()))
    return len(recs)


def main(argv: list[str]) -> None:
    ctrl_fd, data_fd = (int(a) for a in argv)
    child(Connection(ctrl_fd, writable=False), Connection(data_fd, readable=False))


if __name__ == "__main__":
    main(sys.argv[1:])
