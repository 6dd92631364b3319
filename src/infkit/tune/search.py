"""Which candidates to measure (exhaustive grid, or a quick hill climb), how to rank them under a latency budget,
and the Pareto front of throughput against latency. No servers here: `measure(candidate) -> result` is given."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from infkit.tune.space import Candidate, Limits, Space, refusal

PERCENTILES = ("p50", "p90", "p99")


@dataclass(frozen=True)
class Budget:
    """A latency budget: `percentile` (p50, p90 or p99) of a load level at most `ms` milliseconds."""

    percentile: str
    ms: float

    def met(self, level: dict) -> bool:
        value = level.get(f"{self.percentile}_ms")
        return (
            value is not None and not math.isnan(value) and value <= self.ms and not level.get("errors")
        ) and level.get("requests", 0) > 0

    def describe(self) -> str:
        return f"{self.percentile} <= {self.ms:g} ms"


def best_level(result: dict, budget: Budget) -> dict | None:
    """The level of a measured candidate with the highest throughput within the budget (no errors), or None."""
    within = [lv for lv in result.get("levels", []) if budget.met(lv)]
    return max(within, key=lambda lv: lv["throughput_rps"], default=None)


def score(result: dict, budget: Budget) -> tuple:
    """Larger is better: candidates meeting the budget by their throughput within it, then the others by how close
    their lowest latency came to it; unmeasured ones last."""
    levels = [lv for lv in result.get("levels", []) if lv.get("requests")]
    if result.get("status") != "measured" or not levels:
        return (0, 0.0)
    best = best_level(result, budget)
    if best is not None:
        return (2, best["throughput_rps"])
    lowest = min(lv[f"{budget.percentile}_ms"] for lv in levels)
    return (1, -lowest)


def rank(results: Sequence[dict], budget: Budget) -> list[dict]:
    """Results best first (stable for ties: the order measured)."""
    return sorted(results, key=lambda r: score(r, budget), reverse=True)


def pareto(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (throughput, latency) no other point beats on both (more throughput, less latency),
    in order of throughput."""
    front = []
    for i, (x, y) in enumerate(points):
        if any(x2 >= x and y2 <= y and (x2 > x or y2 < y) for j, (x2, y2) in enumerate(points) if j != i):
            continue
        front.append(i)
    return sorted(front, key=lambda i: points[i][0])


Measure = Callable[[Candidate], dict]
Echo = Callable[[str], None]


class Search:
    """Runs candidates through `measure`, skipping refused ones, keeping every result; Ctrl-C (KeyboardInterrupt
    from measure) ends the search and what was measured stays in `results`."""

    def __init__(self, space: Space, limits: Limits, budget: Budget, measure: Measure, echo: Echo = print):
        self.space, self.limits, self.budget, self.measure, self.echo = space, limits, budget, measure, echo
        self.results: list[dict] = []
        self.seen: dict[Candidate, dict] = {}
        self.interrupted = False

    def refused(self, c: Candidate) -> str | None:
        return refusal(c, self.limits)

    def run_one(self, c: Candidate, index: int, total: int | str) -> dict:
        if c in self.seen:
            return self.seen[c]
        why = self.refused(c)
        if why:
            result = {"candidate": c, "status": "refused", "reason": why, "levels": []}
            self.echo(f"[{index}/{total}] skipped {c.label()}: {why}")
        else:
            self.echo(f"[{index}/{total}] measuring {c.label()} ...")
            result = self.measure(c)
            if result.get("status") == "interrupted":
                self.interrupted = True
        self.seen[c] = result
        self.results.append(result)
        return result

    def exhaustive(self) -> list[dict]:
        grid = self.space.grid()
        if all(self.refused(c) for c in grid):
            return self._all_refused(grid)
        try:
            for k, c in enumerate(grid, 1):
                self.run_one(c, k, len(grid))
                if self.interrupted:
                    break
        except KeyboardInterrupt:
            self.interrupted = True
        return self.results

    def quick(self, max_candidates: int | None = None) -> list[dict]:
        """Hill climb per artifact: measure the start, then its untried neighbours (one step along one knob); move
        to the best of them when it beats the current point, stop when none does or the cap is reached."""
        cap = max_candidates or self.space.size()
        grid = self.space.grid()
        if all(self.refused(c) for c in grid):
            return self._all_refused(grid)
        try:
            for artifact in range(self.space.artifacts):
                start = self.space.start(artifact)
                if self.refused(start):  # the first allowed configuration of this artifact, in grid order
                    start = next((c for c in grid if c.artifact == artifact and not self.refused(c)), None)
                if start is None:
                    continue
                current = start
                self._quick_step(current, cap)
                while not self.interrupted and len(self.measured()) < cap:
                    around = [n for n in self.space.neighbours(current) if n not in self.seen]
                    for n in around:
                        if self.interrupted or len(self.measured()) >= cap:
                            break
                        self._quick_step(n, cap)
                    nearby = [self.seen[n] for n in self.space.neighbours(current) if n in self.seen]
                    best = max(nearby, key=lambda r: score(r, self.budget), default=None)
                    if best is None or score(best, self.budget) <= score(self.seen[current], self.budget):
                        break
                    current = best["candidate"]
                    self.echo(f"  quick: moving to {current.label()}")
                if self.interrupted:
                    break
        except KeyboardInterrupt:
            self.interrupted = True
        return self.results

    def _quick_step(self, c: Candidate, cap: int) -> None:
        self.run_one(c, len(self.measured()) + 1, f"<={cap}")

    def measured(self) -> list[dict]:
        return [r for r in self.results if r.get("status") != "refused"]

    def _all_refused(self, grid: list[Candidate]) -> list[dict]:
        from infkit.errors import InfkitError

        raise InfkitError(f"every candidate is refused, e.g. {grid[0].label()}: {self.refused(grid[0])}")
