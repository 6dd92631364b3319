"""infkit tune without servers: the grid, the guard rails, quick mode's choice of next points, the Pareto front,
ranking under a budget, Ctrl-C keeping what was measured, and the command line's refusals of bad input.

`measure` here is a plain function of the candidate (a made-up landscape): the search logic is what is tested;
the real packaging/serving/measuring is tests/integration/test_tune.py."""

from __future__ import annotations

import csv
import json

import pytest

from infkit.cli.tune import main as tune_main
from infkit.errors import InfkitError
from infkit.tune import report
from infkit.tune.search import Budget, Search, pareto, rank, score
from infkit.tune.space import Candidate, Limits, Space, refusal


def space(**kw) -> Space:
    base = dict(artifacts=1, workers=(1, 2), threads=(1,), batch_size=(1, 4, 8), max_batch_delay=(5,))
    return Space(**(base | kw))


def result(c: Candidate, tput: float, p99: float, errors: int = 0) -> dict:
    level = {"level": 8, "requests": 100, "errors": errors, "throughput_rps": tput}
    level |= {"p50_ms": p99 / 2, "p90_ms": p99 * 0.8, "p99_ms": p99}
    return {"candidate": c, "status": "measured", "levels": [level]}


def landscape(c: Candidate) -> dict:
    """Throughput peaks at 2 workers x batch 8; latency grows with batch and delay."""
    tput = 100 * c.workers + 10 * c.batch_size - (30 if c.max_batch_delay > 10 else 0)
    return result(c, tput, 5 + c.batch_size + c.max_batch_delay)


def test_grid_holds_every_combination_in_the_users_order():
    s = space()
    grid = s.grid()
    assert s.size() == len(grid) == 6
    assert [(c.workers, c.batch_size) for c in grid] == [(1, 1), (1, 4), (1, 8), (2, 1), (2, 4), (2, 8)]
    assert len(space(artifacts=2).grid()) == 12 and space(artifacts=2).grid()[6].artifact == 1


def test_guard_rails_name_the_value_and_the_fix():
    two = Limits(cores=2)
    assert refusal(Candidate(0, 2, 1, 8, 5), two) is None
    why = refusal(Candidate(0, 2, 2, 8, 5), two)
    assert "workers 2 x threads 2 = 4 > 2 usable cores" in why and "--allow-oversubscribe" in why
    assert refusal(Candidate(0, 2, 2, 8, 5), Limits(cores=2, allow_oversubscribe=True)) is None
    # auto threads (0) are cores // workers: never oversubscribed by themselves, but 4 workers on 2 cores are
    assert refusal(Candidate(0, 2, 0, 8, 5), two) is None
    assert "workers 4 x threads 1" in refusal(Candidate(0, 4, 0, 8, 5), two)
    # Neuron: workers x cores per worker <= NeuronCores, and the NeuronCores must be known
    neuron = Limits(cores=64, neuron_cores=4, neuron_per_worker={0: 2})
    assert refusal(Candidate(0, 2, 1, 8, 5), neuron) is None
    why = refusal(Candidate(0, 3, 1, 8, 5), neuron)
    assert "workers 3 x 2 NeuronCore(s) per worker = 6 > 4 NeuronCores" in why and "at most 2 workers" in why
    assert "--neuron-cores" in refusal(Candidate(0, 1, 1, 8, 5), Limits(cores=64, neuron_per_worker={0: 1}))


def test_exhaustive_measures_every_allowed_candidate_and_skips_the_refused():
    seen, lines = [], []
    s = space(threads=(1, 2))
    search = Search(s, Limits(cores=2), Budget("p99", 100), lambda c: seen.append(c) or landscape(c), lines.append)
    results = search.exhaustive()
    assert len(results) == 12 and len(seen) == 9  # 2 workers x 2 threads refused on 2 cores (3 batch sizes)
    assert all(c.workers * c.threads <= 2 for c in seen)
    assert sum("skipped" in line for line in lines) == 3 and sum("measuring" in line for line in lines) == 9
    assert rank(results, Budget("p99", 100))[0]["candidate"] == Candidate(0, 2, 1, 8, 5)


def test_every_candidate_refused_is_an_error():
    with pytest.raises(InfkitError, match="every candidate is refused"):
        Search(space(workers=(4,)), Limits(cores=2), Budget("p99", 10), landscape, lambda _: None).exhaustive()


def test_quick_climbs_to_the_best_point_measuring_fewer():
    big = Space(1, (1, 2), (1,), (1, 2, 4, 8, 16), (0, 2, 5, 20))
    seen = []
    search = Search(big, Limits(cores=2), Budget("p99", 1000), lambda c: seen.append(c) or landscape(c), print)
    results = search.quick()
    best = rank(results, Budget("p99", 1000))[0]["candidate"]
    # the landscape's peak within budget: 2 workers, batch 16, delay <= 5 (all three tie on throughput)
    assert (best.workers, best.batch_size) == (2, 16) and best.max_batch_delay <= 5
    assert len(set(seen)) == len(seen) < big.size() // 2  # nothing measured twice, far fewer than the grid
    # its first steps: the start (the first value of each knob), then its neighbours one knob away
    assert seen[0] == Candidate(0, 1, 1, 1, 0)
    assert set(seen[1:4]) == {Candidate(0, 2, 1, 1, 0), Candidate(0, 1, 1, 2, 0), Candidate(0, 1, 1, 1, 2)}


def test_quick_respects_the_cap_and_the_budget():
    big = Space(1, (1, 2), (1,), (1, 2, 4, 8, 16), (0, 2, 5, 20))
    seen = []
    Search(big, Limits(cores=2), Budget("p99", 1000), lambda c: seen.append(c) or landscape(c), print).quick(5)
    assert len(seen) == 5
    # a tight budget: the climb moves toward low latency, not throughput
    tight = Search(big, Limits(cores=2), Budget("p99", 8), landscape, print)
    ranked = rank(tight.quick(), Budget("p99", 8))
    assert ranked[0]["candidate"].batch_size <= 2 and score(ranked[0], Budget("p99", 8))[0] == 2


def test_neighbours_step_one_value_along_one_knob():
    s = space()
    n = s.neighbours(Candidate(0, 1, 1, 4, 5))
    assert set(n) == {Candidate(0, 2, 1, 4, 5), Candidate(0, 1, 1, 8, 5), Candidate(0, 1, 1, 1, 5)}


def test_pareto_front_keeps_only_undominated_points():
    points = [(100, 10), (200, 20), (150, 30), (50, 5), (200, 25), (90, 10)]
    assert pareto(points) == [3, 0, 1]


def test_ranking_under_a_budget():
    budget = Budget("p99", 20)
    fast_slow = result(Candidate(0, 2, 1, 8, 20), 500, 40)  # more throughput, over budget
    within = result(Candidate(0, 1, 1, 1, 0), 200, 15)
    erroring = result(Candidate(0, 1, 1, 4, 0), 900, 10, errors=3)  # 3 % errors never meet a budget
    failed = {"candidate": Candidate(0, 2, 1, 1, 0), "status": "failed", "reason": "x", "levels": []}
    ranked = rank([fast_slow, failed, within, erroring], budget)
    assert ranked[0] is within and ranked[-1] is failed
    # then a candidate over budget but answering, then one whose level failed (errors above the 1 % limit)
    assert ranked[1] is fast_slow and ranked[2] is erroring
    assert Budget("p50", 20).met(fast_slow["levels"][0])


def test_ctrl_c_keeps_what_was_measured(tmp_path):
    calls = []

    def measure(c):
        calls.append(c)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return landscape(c)

    search = Search(space(), Limits(cores=2), Budget("p99", 100), measure, print)
    results = search.exhaustive()
    assert search.interrupted and len(results) == 2
    paths, _ = report.write(
        tmp_path, {"x": 1}, {"cpu_model": "test"}, results, Budget("p99", 100), ["digits_onnx"], "clients", True
    )
    doc = json.loads(paths["json"].read_text())
    assert doc["interrupted"] and len(doc["candidates"]) == 2 and doc["machine"]["cpu_model"] == "test"
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [int(r["batch_size"]) for r in rows] == [4, 1] and rows[0]["meets_budget"] == "True"
    assert paths["markdown"].read_text().count("\n| ") == 3  # header + 2 rows
    assert paths["png"].stat().st_size > 5000


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{missing}", "--p99-ms", "50"], "is not a folder"),
        (["{empty}", "--p99-ms", "50"], "has no manifest.json"),
        (["{empty}", "--p99-ms", "0"], "must be > 0"),
        (["{empty}", "--p99-ms", "50", "--workers", ""], "comma-separated list"),
        (["{empty}", "--p99-ms", "50", "--batch-size", "4,0"], "integers >= 1"),
        (["{empty}", "--p99-ms", "50", "--concurrency", "-1"], "integers >= 1"),
        (["{empty}"], "--objective throughput needs a latency budget: pass one of --p50-ms --p90-ms --p99-ms"),
        (["{empty}", "--objective", "cost", "--p99-ms", "50"], "--objective cost needs a price: pass --instance"),
        (["{empty}", "--p99-ms", "50", "--instance", "m5.large"], "'m5.large' is not in the price table; known:"),
        (["{empty}", "--objective", "latency", "--concurrency", "1,8"], "ranks the p50 at one load level"),
        (["{empty}", "--p99-ms", "50", "--max-error-rate", "2"], "give a fraction in [0, 1]"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    argv = [a.format(missing=tmp_path / "nope", empty=tmp_path / "empty") for a in argv]
    try:
        code = tune_main(argv)
    except SystemExit as exc:  # argparse's own refusal
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().splitlines()[-1].count("error:") == 1
