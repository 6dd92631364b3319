"""Which candidates to measure (exhaustive grid, or a quick hill climb), how to rank them for an objective
(infkit.tune.objective: throughput or cost under a latency budget, or the lowest p50 at one level), and the Pareto
front of throughput against latency. No servers here: `measure(candidate) -> result` is given."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from infkit.tune.objective import Budget, Objective, as_objective
from infkit.tune.space import Candidate, Limits, Space, refusal

__all__ = ["Budget", "Objective", "Search", "best_level", "pareto", "rank", "score"]

PERCENTILES = ("p50", "p90", "p99")


def best_level(result: dict, objective: Objective | Budget) -> dict | None:
    """The level of a measured candidate that counts for the objective (a budget alone: the highest successful
    throughput within it), or None."""
    return as_objective(objective).best_level(result)


def score(result: dict, objective: Objective | Budget) -> tuple:
    """Larger is better (Objective.score)."""
    return as_objective(objective).score(result)


def rank(results: Sequence[dict], objective: Objective | Budget) -> list[dict]:
    """Results best first (stable for ties: the order measured)."""
    return sorted(results, key=lambda r: score(r, objective), reverse=True)


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

    def __init__(
        self, space: Space, limits: Limits, objective: Objective | Budget, measure: Measure, echo: Echo = print
    ):
        self.space, self.limits, self.measure, self.echo = space, limits, measure, echo
        self.objective = as_objective(objective)
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
                    best = max(nearby, key=lambda r: score(r, self.objective), default=None)
                    if best is None or score(best, self.objective) <= score(self.seen[current], self.objective):
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
