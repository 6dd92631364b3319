"""What `infkit tune` optimises: the most successful throughput under a latency budget (the default), the lowest p50
at one load level (a latency-first configuration, e.g. for one client), or the lowest cost per million inferences
under a latency budget. Levels that failed (error rate above the limit, or nothing answered) never count."""

from __future__ import annotations

import math
from dataclasses import dataclass

from infkit.bench.cost import Price
from infkit.bench.stats import MAX_ERROR_RATE

OBJECTIVES = ("throughput", "latency", "cost")


@dataclass(frozen=True)
class Budget:
    """A latency budget: `percentile` (p50, p90 or p99) of a load level at most `ms` milliseconds."""

    percentile: str
    ms: float

    def met(self, level: dict, max_error_rate: float = MAX_ERROR_RATE) -> bool:
        value = level.get(f"{self.percentile}_ms")
        return passed(level, max_error_rate) and value is not None and not math.isnan(value) and value <= self.ms

    def describe(self) -> str:
        return f"{self.percentile} <= {self.ms:g} ms"


def error_rate(level: dict) -> float:
    requests = level.get("requests") or 0
    return (level.get("errors") or 0) / requests if requests else math.nan


def passed(level: dict, max_error_rate: float = MAX_ERROR_RATE) -> bool:
    """Something answered successfully and the error rate is within the limit."""
    requests = level.get("requests") or 0
    ok = level.get("ok", requests - (level.get("errors") or 0))
    return requests > 0 and ok > 0 and error_rate(level) <= max_error_rate


@dataclass(frozen=True)
class Objective:
    kind: str = "throughput"
    budget: Budget | None = None
    #: latency: the load level (concurrency or rate) whose p50 is ranked
    level: float | None = None
    #: cost (and the cost column of any objective): the hourly price
    price: Price | None = None
    max_error_rate: float = MAX_ERROR_RATE

    def eligible(self, lv: dict) -> bool:
        if not passed(lv, self.max_error_rate):
            return False
        if self.kind == "latency" and self.level is not None and lv.get("level") != self.level:
            return False
        return self.budget is None or self.budget.met(lv, self.max_error_rate)

    def cost(self, lv: dict) -> float | None:
        return self.price.per_million(lv.get("throughput_rps")) if self.price else None

    def best_level(self, result: dict) -> dict | None:
        """The candidate's level that counts for the objective, or None when no level qualifies."""
        within = [lv for lv in result.get("levels", []) if self.eligible(lv)]
        if self.kind == "latency":
            return min(within, key=lambda lv: lv["p50_ms"], default=None)
        return max(within, key=lambda lv: lv["throughput_rps"], default=None)

    def score(self, result: dict) -> tuple:
        """Larger is better: candidates meeting the objective by its figure, then the others by how close their
        lowest latency came; unmeasured ones last."""
        levels = [lv for lv in result.get("levels", []) if lv.get("requests")]
        if result.get("status") != "measured" or not levels:
            return (0, 0.0)
        best = self.best_level(result)
        if best is not None:
            if self.kind == "latency":
                return (2, -best["p50_ms"])
            if self.kind == "cost":
                return (2, -self.cost(best))
            return (2, best["throughput_rps"])
        key = f"{self.budget.percentile}_ms" if self.budget else "p50_ms"
        values = [lv[key] for lv in levels if passed(lv, self.max_error_rate) and not math.isnan(lv[key])]
        return (1, -min(values)) if values else (0.5, 0.0)

    def describe(self) -> str:
        budget = f" within {self.budget.describe()}" if self.budget else ""
        errors = f"error rate <= {self.max_error_rate:.1%}"
        if self.kind == "latency":
            return f"lowest p50 at {self.level:g}{budget} ({errors})"
        if self.kind == "cost":
            return f"lowest cost per million inferences at {self.price.describe()}{budget} ({errors})"
        return f"successful throughput{budget} ({errors})"


def as_objective(x: Objective | Budget) -> Objective:
    return x if isinstance(x, Objective) else Objective("throughput", x)
