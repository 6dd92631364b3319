"""infkit tune for real on the session's digits ONNX artifact: two candidates packaged, served on free loopback ports
and measured with short windows; the ranking, the plot and the winning .mar; Ctrl-C keeps what was measured and
leaves no server behind."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from infkit.cli.tune import main as tune_main
from infkit.serve.core.process import STATE_FILE
from infkit.serve.torchserve import server
from tests.conftest import ROOT
from tests.helpers.run_if import run_if

pytestmark = [pytest.mark.slow, pytest.mark.serve, run_if(java=True)]

# short windows: a level stops once 2 one-second windows agree within 500 % (i.e. after about 2 s)
SHORT = ["--warmup", "0.5", "--duration", "4", "--window", "1", "--stable-windows", "2", "--tolerance", "5"]


def test_tune_two_candidates_writes_ranking_plot_and_winner(onnx_compiled, tmp_path, capsys):
    argv = [str(onnx_compiled), "--p99-ms", "5000", "--concurrency", "4", "--batch-size", "1,4"]
    argv += ["--max-batch-delay", "2", "--threads", "1", "--out", str(tmp_path), *SHORT]
    assert tune_main(argv) == 0
    out = capsys.readouterr().out
    assert "[1/2] measuring w=1 t=1 batch=1 delay=2ms" in out and "[2/2] measuring" in out
    (run_dir,) = (p for p in tmp_path.iterdir() if p.is_dir())
    rows = list(csv.DictReader((run_dir / "ranking.csv").open()))
    assert sorted(int(r["batch_size"]) for r in rows) == [1, 4]
    assert all(r["status"] == "measured" and r["meets_budget"] == "True" for r in rows)
    assert float(rows[0]["throughput_rps"]) >= float(rows[1]["throughput_rps"]) > 0
    doc = json.loads((run_dir / "results.json").read_text())
    assert doc["machine"]["usable_cores"] >= 1 and not doc["interrupted"]
    for cand in doc["candidates"]:
        (level,) = cand["levels"]
        # every request answered; the server counted them (warm-up included) and split its time by stage
        srv = level["server"]
        assert level["errors"] == 0 and srv["requests"] >= level["requests"] > 0
        assert srv["mean_inference_ms"] > 0 and srv["mean_preprocess_ms"] > 0
    assert (run_dir / "pareto.png").stat().st_size > 10_000
    assert "| rank |" in (run_dir / "ranking.md").read_text()
    # the winner: its model-config.yaml and a .mar that carries the same settings
    winner = yaml.safe_load((run_dir / "winner/model-config.yaml").read_text())
    assert winner["batchSize"] == int(rows[0]["batch_size"]) and winner["maxBatchDelay"] == 2
    assert winner["minWorkers"] == 1 and winner["handler"]["threads"] == 1
    (mar,) = (run_dir / "winner").glob("*.mar")
    with zipfile.ZipFile(mar) as z:
        packed = yaml.safe_load(z.read("model-config.yaml"))
    assert packed == winner
    # every candidate's server was stopped (its state folder is removed only then) and its logs kept
    for cand in doc["candidates"]:
        assert not Path(cand["server_state_dir"]).exists()
        assert (Path(cand["server_logs"]) / "ts_log.log").is_file()


def test_tune_latency_objective_finds_the_config_without_a_batching_wait(onnx_compiled, tmp_path, capsys):
    """One client: batch 4 with a 50 ms delay waits the delay on every request; batch 1 answers at once. The latency
    objective ranks by p50 at that one level and picks batch 1 though it is measured second; with --instance the
    table shows the cost per million at each candidate's successful throughput."""
    argv = [str(onnx_compiled), "--objective", "latency", "--concurrency", "1", "--batch-size", "4,1"]
    argv += ["--max-batch-delay", "50", "--threads", "1", "--instance", "c7i.xlarge", "--out", str(tmp_path), *SHORT]
    assert tune_main(argv) == 0
    out = capsys.readouterr().out
    assert "winner: w=1 t=1 batch=1 delay=50ms" in out
    (run_dir,) = (p for p in tmp_path.iterdir() if p.is_dir())
    rows = list(csv.DictReader((run_dir / "ranking.csv").open()))
    assert [int(r["batch_size"]) for r in rows] == [1, 4]
    fast, waiting = (float(r["p50_ms"]) for r in rows)
    assert waiting >= 45 and fast < waiting - 20, rows
    for r in rows:
        expected = 0.1785 / (3600 * float(r["throughput_rps"])) * 1e6
        assert float(r["cost_per_million_usd"]) == pytest.approx(expected, rel=0.01)
    doc = json.loads((run_dir / "results.json").read_text())
    assert doc["objective"] == "latency" and doc["pricing"]["per_hour"] == 0.1785
    # the in-process batch-1 reference, measured in the same run, beside the best served p50
    (ref,) = doc["in_process_reference"].values()
    assert (
        ref["backend"] == "onnx"
        and 0 < ref["p50_ms"] < fast
        and ref["served_best_p50_ms"] == pytest.approx(fast, abs=0.01)
    )
    assert f"serving adds {ref['served_best_p50_ms'] - ref['p50_ms']:+.2f} ms" in out
    assert doc["machine_load"]["before"]["load_avg_1m"] >= 0
    assert all(c["levels"][0]["machine_load"]["before"]["usable_cores"] >= 1 for c in doc["candidates"])
    assert yaml.safe_load((run_dir / "winner/model-config.yaml").read_text())["batchSize"] == 1


def _wait_for_load(tmp: Path, deadline: float, lines: list[str]) -> None:
    """Until the server tune started under `tmp` (its TMPDIR) has answered a request: the level's load is on."""
    from infkit.bench import promscrape

    while time.monotonic() < deadline:
        for state_file in tmp.glob(f"infkit-tune-*/serve/{STATE_FILE}"):
            try:
                state = json.loads(state_file.read_text())
            except (OSError, ValueError):  # being written, or removed at the server's stop
                continue
            counts = promscrape.scrape(state["urls"]["metrics"], state["models"][0], timeout=2) or {}
            if counts.get("ts_inference_requests_total", 0) > 0:
                return
        time.sleep(0.3)
    raise AssertionError("the second candidate's server answered no request in time:\n" + "".join(lines))


def test_tune_ctrl_c_keeps_what_was_measured(onnx_compiled, tmp_path):
    cmd = [sys.executable, str(ROOT / "src/tune.py"), str(onnx_compiled), "--p99-ms", "5000"]
    cmd += ["--concurrency", "2", "--batch-size", "1,2", "--max-batch-delay", "1", "--threads", "1"]
    cmd += ["--out", str(tmp_path), "--warmup", "0.5", "--duration", "4", "--window", "1", "--stable-windows", "50"]
    # tune's servers keep their state under $TMPDIR/infkit-tune-*: a short folder of this test's own
    tmp = Path(tempfile.mkdtemp(prefix="tune-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env)
    lines = []
    deadline = time.monotonic() + 240
    try:
        for line in proc.stdout:  # the second candidate: interrupt it while its level is under load
            lines.append(line)
            if "[2/2] measuring" in line:
                break
            assert time.monotonic() < deadline, "".join(lines)
        # the level runs for 10 s once the server is up: Ctrl-C a moment after its first answered request
        _wait_for_load(tmp, deadline, lines)
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
        output = "".join(lines) + rest
        assert proc.returncode == 130, output
        (run_dir,) = (p for p in tmp_path.iterdir() if p.is_dir() and p.name != "logs")
        doc = json.loads((run_dir / "results.json").read_text())
        assert doc["interrupted"]
        statuses = sorted(c["status"] for c in doc["candidates"])
        assert statuses[0] == "interrupted" or len(statuses) == 1, statuses
        assert any(c["status"] == "measured" and c["levels"][0]["requests"] > 0 for c in doc["candidates"])
        assert (run_dir / "ranking.csv").is_file() and (run_dir / "pareto.png").is_file()
        # the server running at Ctrl-C was stopped
        assert all(not Path(c["server_state_dir"]).exists() for c in doc["candidates"]), output
        assert not list(tmp_path.rglob(STATE_FILE)), output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        leftover = list(tmp.rglob(STATE_FILE))
        for state_file in leftover:  # a failed run leaves no TorchServe behind for the tests after it
            server.stop(state_file.parent)
        shutil.rmtree(tmp, ignore_errors=True)
    assert not leftover, leftover  # nor in tune's temporary folders
