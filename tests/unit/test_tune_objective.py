"""tune's objectives without servers: the most throughput within a budget, the lowest p50 at one load level, the
lowest cost per million; failed levels (errors above the limit) never qualify; the table shows cost and error rate.
`measure` is a plain function of the candidate (a made-up landscape); the real run is tests/integration/test_tune.py."""

from __future__ import annotations

import json

import pytest

from infkit.bench.cost import Price
from infkit.tune import report
from infkit.tune.objective import Budget, Objective
from infkit.tune.search import Search, rank
from infkit.tune.space import Candidate, Limits, Space

SPACE = Space(1, workers=(1, 2), threads=(1,), batch_size=(1, 8), max_batch_delay=(0, 20))


def level(conc: float, tput: float, p50: float, errors: int = 0, requests: int = 1000) -> dict:
    ok = requests - errors
    return {
        "level": conc,
        "requests": requests,
        "ok": ok,
        "errors": errors,
        "error_rate": errors / requests,
        "throughput_rps": tput,
        "p50_ms": p50,
        "p90_ms": p50 * 1.5,
        "p99_ms": p50 * 2,
    }


def landscape(c: Candidate) -> dict:
    """Batching trades latency for throughput: one client waits the whole delay when batch > 1; 16 clients fill
    batches. Two workers serve more."""
    waits = c.max_batch_delay if c.batch_size > 1 else 0
    one = level(1, 1000 / (5 + waits), 5 + waits + (1 if c.workers > 1 else 0))
    many = level(16, 100 * c.workers * (3 if c.batch_size > 1 else 1), 40 + waits)
    return {"candidate": c, "status": "measured", "levels": [one, many]}


def best(objective) -> Candidate:
    results = Search(SPACE, Limits(cores=2), objective, landscape, lambda _: None).exhaustive()
    return rank(results, objective)[0]["candidate"]


def test_each_objective_finds_its_own_winner():
    budget = Budget("p99", 200)
    assert best(Objective("throughput", budget)) == Candidate(0, 2, 1, 8, 0)
    # one client: no batching wait, one worker (the made-up second worker costs 1 ms)
    assert best(Objective("latency", None, level=1)) == Candidate(0, 1, 1, 1, 0)
    # the latency objective's budget still applies; a budget nobody meets leaves no winner
    assert Objective("latency", Budget("p99", 1), level=1).best_level(landscape(Candidate(0, 1, 1, 1, 0))) is None
    # one price for every candidate: the cheapest per million is the one with the most successful throughput
    price = Price(0.1785, "c7i.xlarge")
    cheapest = Objective("cost", budget, price=price)
    assert best(cheapest) == Candidate(0, 2, 1, 8, 0)
    top = cheapest.best_level(landscape(Candidate(0, 2, 1, 8, 0)))
    assert cheapest.cost(top) == pytest.approx(0.1785 / (3600 * 600) * 1e6)


def test_failed_levels_never_qualify():
    objective = Objective("throughput", Budget("p99", 1000))
    erroring = {"candidate": Candidate(0, 1, 1, 1, 0), "status": "measured", "levels": [level(16, 900, 5, errors=20)]}
    assert objective.best_level(erroring) is None  # 2 % errors > 1 %
    assert Objective("throughput", Budget("p99", 1000), max_error_rate=0.05).best_level(erroring) is not None
    nothing = {"candidate": Candidate(0, 1, 1, 1, 0), "status": "measured", "levels": [level(16, 0.0, 5, errors=1000)]}
    assert objective.best_level(nothing) is None
    # below any candidate that answered within the error limit, even over its budget
    answering = {"candidate": Candidate(0, 1, 1, 1, 0), "status": "measured", "levels": [level(16, 9, 5000)]}
    assert objective.score(nothing) < objective.score(answering) and objective.score(erroring)[0] < 1


def test_the_table_shows_the_objective_cost_and_error_rate(tmp_path):
    price = Price(0.7582, "inf2.xlarge", "test table")
    objective = Objective("cost", Budget("p99", 200), price=price)
    results = [landscape(c) for c in SPACE.grid()]
    paths, ranked = report.write(
        tmp_path, {}, {"cpu_model": "test"}, results, objective, ["digits_onnx"], "clients", False, {"warnings": []}
    )
    md = paths["markdown"].read_text()
    assert md.startswith("Candidates ranked by lowest cost per million inferences at inf2.xlarge at $0.7582/hour")
    assert "$ per M inferences" in md and "error rate" in md
    doc = json.loads(paths["json"].read_text())
    first = doc["ranking"][0]
    assert first["cost_per_million_usd"] == pytest.approx(0.7582 / (3600 * first["throughput_rps"]) * 1e6, rel=1e-4)
    assert doc["objective"] == "cost" and doc["pricing"]["instance"] == "inf2.xlarge" and doc["warnings"] == []
    assert ranked[0]["candidate"] == Candidate(0, 2, 1, 8, 0)
