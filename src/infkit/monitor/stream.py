"""Reading neuron-monitor's stream: one JSON document per line, from stdin, a pipe or a file.

A reader thread stamps every report with `time.perf_counter()` when it arrives (the benchmark's clock;
neuron-monitor's reports carry no time of their own). A line that is not a neuron-monitor report is
skipped with one warning on stderr, never an exception."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from infkit.errors import InfkitError
from infkit.monitor.schema import NotAReport, Report, parse_report


def parse_line(line: str) -> Report:
    """One line -> Report; ValueError (with the reason) when it is not JSON or not a report."""
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    try:
        return parse_report(doc)
    except NotAReport as exc:
        raise ValueError(str(exc)) from None


def warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def check_source(source: str, option: str = "--input") -> None:
    """'-' or an existing file/pipe; InfkitError naming the fix otherwise."""
    if source == "-":
        return
    path = Path(source)
    if not path.exists():
        raise InfkitError(
            f"{option} {source}: no such file; give the file neuron-monitor writes to "
            f"(neuron-monitor > {path.name}) or - to read stdin (neuron-monitor | ...)"
        )
    if path.is_dir():
        raise InfkitError(f"{option} {source} is a directory; give neuron-monitor's output file or - for stdin")


class Stream:
    """neuron-monitor's reports as they arrive, read by a daemon thread.

    source: '-' (stdin) or a path. A regular file is followed like `tail -f` (neuron-monitor keeps appending);
    with skip_existing the reports already in it are skipped (their time is unknown), so only reports written
    from now on count. Stdin and pipes end at end of input (`ended` is set)."""

    def __init__(
        self,
        source: str,
        skip_existing: bool = False,
        keep: bool = True,
        on_report: Callable[[Report], None] | None = None,
        warn: Callable[[str], None] = warn_stderr,
        poll: float = 0.2,
        option: str = "--input",
    ):
        self.option = option
        self.source, self.skip_existing, self.keep = source, skip_existing, keep
        self.on_report, self.warn, self.poll = on_report, warn, poll
        self.lines = self.skipped = 0
        self.stamped: list[tuple[float, Report]] = []
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    # -- reading -------------------------------------------------------------------------------
    def start(self) -> Stream:
        check_source(self.source, self.option)
        f = sys.stdin.buffer if self.source == "-" else open(self.source, "rb")
        follow = self.source != "-" and stat.S_ISREG(os.fstat(f.fileno()).st_mode)
        drop_partial = False
        if follow and self.skip_existing:
            end = f.seek(0, os.SEEK_END)
            if end:
                f.seek(end - 1)
                drop_partial = f.read(1) != b"\n"  # we landed inside a line being written: drop its rest
        self._thread = threading.Thread(
            target=self._run, args=(f, follow, drop_partial), daemon=True, name="neuron-monitor-reader"
        )
        self._thread.start()
        return self

    def _run(self, f, follow: bool, drop_partial: bool) -> None:
        buf = b""
        try:
            while not self._stop.is_set():
                chunk = f.readline()
                if not chunk:
                    if not follow:
                        break
                    self._stop.wait(self.poll)
                    continue
                buf += chunk
                if not buf.endswith(b"\n") and follow:
                    continue  # the rest of this line is not written yet
                line, buf = buf, b""
                if drop_partial:
                    drop_partial = False
                    continue
                self.feed(line.decode("utf-8", errors="replace"))
            if buf and not drop_partial:
                self.feed(buf.decode("utf-8", errors="replace"))
        finally:
            if f is not sys.stdin.buffer:
                f.close()
            self.ended.set()
            with self._cond:
                self._cond.notify_all()

    def feed(self, line: str, now: float | None = None) -> Report | None:
        """Handle one line (the reader thread calls this; tests may too)."""
        if not line.strip():
            return None
        self.lines += 1
        try:
            report = parse_line(line)
        except ValueError as exc:
            self.skipped += 1
            self.warn(f"neuron-monitor line {self.lines} skipped: {exc}")
            return None
        stamp = time.perf_counter() if now is None else now
        with self._cond:
            if self.keep:
                self.stamped.append((stamp, report))
            self._cond.notify_all()
        if self.on_report:
            self.on_report(report)
        return report

    def stop(self) -> None:
        """Stop following a file (a thread blocked on stdin simply ends with the process)."""
        self._stop.set()

    # -- reading the results -------------------------------------------------------------------
    @property
    def reports(self) -> int:
        return self.lines - self.skipped

    def snapshot(self) -> list[tuple[float, Report]]:
        with self._cond:
            return list(self.stamped)

    def wait_past(self, t: float, timeout: float) -> bool:
        """Wait until a report stamped after perf_counter time t arrived (True), the input ended or timeout."""
        deadline = time.perf_counter() + timeout
        with self._cond:
            while not (self.stamped and self.stamped[-1][0] > t):
                left = deadline - time.perf_counter()
                if left <= 0 or self.ended.is_set():
                    return False
                self._cond.wait(min(left, 0.2))
            return True
