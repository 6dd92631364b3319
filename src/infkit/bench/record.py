"""One request as the load generator saw it (its own module: client processes need it without numpy)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Record:
    """One request. Times are perf_counter seconds. `intended` is when it should have been sent
    (open loop: the schedule; closed loop: equal to `start`); latency counts from `intended`."""

    intended: float
    start: float
    end: float
    status: int  # HTTP status; 0 for a transport error (connection refused, timeout)
    warmup: bool = False

    @property
    def latency(self) -> float:
        return self.end - self.intended

    @property
    def lag(self) -> float:
        """How late the client itself sent it (open loop)."""
        return self.start - self.intended

    def row(self) -> dict:
        return asdict(self) | {"latency": self.latency}
