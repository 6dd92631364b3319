"""The search space of `infkit tune`: candidates (one serving configuration each), the grid, the guard rails."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

#: the knobs a candidate sets, in the order the quick search walks them
KNOBS = ("workers", "threads", "batch_size", "max_batch_delay", "spinning")


@dataclass(frozen=True)
class Candidate:
    """One serving configuration of one compiled artifact (index into the artifacts given)."""

    artifact: int
    workers: int
    #: intra-op threads per worker; 0 = auto (the handler's default: usable cores // workers)
    threads: int
    batch_size: int
    max_batch_delay: int
    #: ONNX Runtime thread spinning: None = as compile measured (and only on cores of the worker's own)
    spinning: bool | None = None

    def label(self, names: Sequence[str] = ()) -> str:
        spin = "" if self.spinning is None else f" spin={'on' if self.spinning else 'off'}"
        name = f"{names[self.artifact]} " if names else ""
        threads = self.threads or "auto"
        return f"{name}w={self.workers} t={threads} batch={self.batch_size} delay={self.max_batch_delay}ms{spin}"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Space:
    """The values each knob may take; lists keep the user's order (the quick search steps between neighbours)."""

    artifacts: int
    workers: tuple[int, ...]
    threads: tuple[int, ...]
    batch_size: tuple[int, ...]
    max_batch_delay: tuple[int, ...]
    spinning: tuple[bool | None, ...] = (None,)

    def values(self, knob: str) -> tuple:
        return getattr(self, knob)

    def size(self) -> int:
        return self.artifacts * len(list(itertools.product(*(self.values(k) for k in KNOBS))))

    def grid(self) -> list[Candidate]:
        """Every combination, artifact by artifact, in the user's order."""
        return [
            Candidate(a, *combo)
            for a in range(self.artifacts)
            for combo in itertools.product(*(self.values(k) for k in KNOBS))
        ]

    def start(self, artifact: int) -> Candidate:
        """Where the quick search starts: the first value of each knob (as Model Analyzer's quick mode starts from
        the smallest configuration)."""
        return Candidate(artifact, *(self.values(k)[0] for k in KNOBS))

    def neighbours(self, c: Candidate) -> list[Candidate]:
        """The candidates one step away along one knob (the next value up or down in its list)."""
        out = []
        for knob in KNOBS:
            values = self.values(knob)
            i = values.index(getattr(c, knob))
            for j in (i + 1, i - 1):
                if 0 <= j < len(values):
                    out.append(Candidate(**{**c.as_dict(), knob: values[j]}))
        return out


@dataclass
class Limits:
    """What the machine can hold: usable CPU cores, and (Neuron artifacts) NeuronCores and cores per worker."""

    cores: int
    allow_oversubscribe: bool = False
    neuron_cores: int | None = None
    #: artifact index -> NeuronCores one worker needs (Neuron artifacts only)
    neuron_per_worker: dict[int, int] = field(default_factory=dict)


def refusal(c: Candidate, limits: Limits) -> str | None:
    """Why the candidate is not measured (one line naming the value and the fix), or None."""
    per_worker = limits.neuron_per_worker.get(c.artifact)
    if per_worker is not None:
        if limits.neuron_cores is None:
            return (
                "a Neuron artifact needs the instance's NeuronCores to check workers against: pass --neuron-cores N "
                "(or set serve.neuron.cores)"
            )
        if c.workers * per_worker > limits.neuron_cores:
            return (
                f"workers {c.workers} x {per_worker} NeuronCore(s) per worker = {c.workers * per_worker} > "
                f"{limits.neuron_cores} NeuronCores; use at most {limits.neuron_cores // per_worker} workers"
            )
    threads = c.threads or max(1, limits.cores // c.workers)  # auto threads never oversubscribe on their own
    if c.workers * threads > limits.cores and not limits.allow_oversubscribe:
        return (
            f"workers {c.workers} x threads {threads} = {c.workers * threads} > {limits.cores} usable cores; "
            "lower --workers/--threads or pass --allow-oversubscribe"
        )
    return None
