"""The load generator against the shared live server: its counts equal TorchServe's own, the open loop keeps its
schedule, sweeps, Ctrl-C, client processes, and the same load from `hey` beside ours."""

from __future__ import annotations

import csv
import itertools
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from infkit.cli.bench import main as bench_main
from tests.conftest import ROOT
from tests.helpers.run_if import run_if

pytestmark = [pytest.mark.slow, pytest.mark.serve, run_if(java=True)]


def _bench(running_server, tmp_path, *extra):
    srv = running_server["server"]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not an image")
    images = [*sorted((ROOT / "tests/resources/digits").glob("*.png"))[:3], bad]
    url = f"http://127.0.0.1:{srv.inference_port}/predictions/{running_server['models']['onnx']}"
    metrics = f"http://127.0.0.1:{srv.metrics_port}/metrics"
    argv = ["--url", url, "--images", *map(str, images), "--warmup", "0", "--interval", "1", "--metrics-url", metrics]
    argv += ["--key-file", running_server["state"]["key_file"], "--out", str(tmp_path / "bench"), *extra]
    # one image in four is bad on purpose: a 25 % error rate is allowed here (the default limit is 1 %)
    argv += ["--max-error-rate", "0.5"]
    assert bench_main(argv) == 0
    (run_dir,) = (tmp_path / "bench").iterdir()
    return json.loads((run_dir / "results.json").read_text()), run_dir


def test_benchmark_counts_match_the_server(running_server, tmp_path):
    doc, run_dir = _bench(running_server, tmp_path, "--num_thread", "4", "--duration", "3", "--instance", "c7i.xlarge")
    (level,) = doc["levels"]
    s = level["summary"]
    assert s["requests"] > 8 and level["sent_including_warmup"] == s["requests"]
    # every request the client sent is one TorchServe counted: nothing dropped, nothing invented
    assert level["server"]["requests"] == s["requests"]
    # one image in four is bad: its 415s are counted as errors, not dropped, and not as throughput
    assert s["errors_by_status"] == {"415": s["errors"]} and s["errors"] >= s["requests"] // 4
    assert s["ok"] + s["errors"] == s["requests"] and level["first_error"].startswith("415 ")
    assert s["throughput_rps"] == pytest.approx(s["ok"] / s["duration_s"]) and not level["failed"]
    # the cost of a million successful answers at c7i.xlarge's price, and the machine's load around the run
    assert doc["pricing"]["instance"] == "c7i.xlarge" and doc["pricing"]["per_hour"] == 0.1785
    expected = 0.1785 / (3600 * s["throughput_rps"]) * 1e6
    assert level["cost_per_million_usd"] == pytest.approx(expected, rel=0.01)
    assert doc["machine_load"]["before"]["load_avg_1m"] >= 0 and level["machine_load"]["after"]["usable_cores"] >= 1
    assert (run_dir / "levels.csv").read_text().count("\n") == 2
    assert len((run_dir / "requests.csv").read_text().splitlines()) == s["requests"] + 1
    assert (run_dir / "latency_throughput.png").stat().st_size > 10_000
    assert doc["machine"]["logical_cores"] >= 1 and doc["machine"]["versions"]["torch"]


def test_a_missing_model_is_no_throughput_exit_1_and_the_404_named(running_server, tmp_path, capsys):
    """Every request to a model the server does not have is TorchServe's 404: 0 successful req/s, exit 1, and the
    error TorchServe sent named."""
    srv = running_server["server"]
    url = f"http://127.0.0.1:{srv.inference_port}/predictions/no_such_model"
    argv = ["--url", url, "--num_thread", "2", "--warmup", "0", "--duration", "2", "--metrics-url", "none"]
    argv += ["--key-file", running_server["state"]["key_file"], "--out", str(tmp_path)]
    assert bench_main(argv) == 1
    (run_dir,) = tmp_path.iterdir()
    (level,) = json.loads((run_dir / "results.json").read_text())["levels"]
    s = level["summary"]
    assert s["requests"] > 0 and s["ok"] == 0 and s["throughput_rps"] == 0 and set(s["errors_by_status"]) == {"404"}
    assert level["first_error"].startswith("404 ModelNotFoundException: ") and "no_such_model" in level["first_error"]
    assert f"first error: {level['first_error']}" in capsys.readouterr().err


def test_open_loop_follows_its_schedule(running_server, tmp_path):
    doc, run_dir = _bench(running_server, tmp_path, "--rate", "20", "--duration", "2", "--workers", "8")
    (level,) = doc["levels"]
    s = level["summary"]
    assert s["requests"] == 40  # intended sends at i/20 s for i < 40
    assert level["server"]["requests"] == 40
    # the schedule itself: one intended send every 50 ms, whatever the server did; latency counts from it
    rows = list(csv.DictReader((run_dir / "requests.csv").open()))
    intended = sorted(float(r["intended"]) for r in rows)
    gaps = [b - a for a, b in itertools.pairwise(intended)]
    assert len(gaps) == 39 and max(abs(g - 0.05) for g in gaps) < 1e-6
    assert all(float(r["latency"]) >= float(r["end"]) - float(r["start"]) - 1e-9 for r in rows)


def test_sweep_writes_one_row_per_level(running_server, tmp_path):
    doc, run_dir = _bench(
        running_server,
        tmp_path,
        "--sweep",
        "1,2",
        "--duration",
        "6",
        "--window",
        "1",
        "--stable-windows",
        "2",
        "--tolerance",
        "5",
    )
    assert [lv["level"] for lv in doc["levels"]] == [1, 2]
    assert all("windows within" in lv["stopped_by"] for lv in doc["levels"])
    for lv in doc["levels"]:
        srv = lv["server"]
        assert srv["mean_processing_ms"] > 0 and srv["mean_queue_ms"] >= 0
        assert abs(srv["mean_queue_ms"] + srv["mean_processing_ms"] - srv["mean_server_ms"]) < 1e-6
    assert (run_dir / "levels.csv").read_text().count("\n") == 3


def test_ctrl_c_stops_cleanly_and_writes_results(running_server, tmp_path):
    srv = running_server["server"]
    url = f"http://127.0.0.1:{srv.inference_port}/predictions/{running_server['models']['onnx']}"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "src/utils/benchmark.py"),
            "--url",
            url,
            "--num_thread",
            "2",
            "--warmup",
            "0",
            "--duration",
            "60",
            "--interval",
            "1",
            "--key-file",
            running_server["state"]["key_file"],
            "--metrics-url",
            "none",
            "--out",
            str(tmp_path / "bench"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True)
    reader.start()
    seen, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline and not any(ln.startswith("pid ") for ln in seen):
        try:  # never blocks for good: a silent benchmark fails the test at the deadline
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            assert proc.poll() is None, "".join(seen)
    assert any(ln.startswith("pid ") for ln in seen), "no progress line within 120 s:\n" + "".join(seen)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    reader.join(timeout=10)
    (run_dir,) = (tmp_path / "bench").iterdir()
    level = json.loads((run_dir / "results.json").read_text())["levels"][0]
    assert level["interrupted"] and level["summary"]["requests"] > 0


# -- the load generator's client processes, and the same load from `hey` --------------------------
def test_client_processes_count_matches_the_server(running_server, tmp_path):
    doc, run_dir = _bench(running_server, tmp_path, "--num_thread", "4", "--processes", "2", "--duration", "3")
    (level,) = doc["levels"]
    s, client = level["summary"], level["client"]
    # two client processes, one record stream: every request sent is one TorchServe counted
    assert client["processes"] == 2 and client["failures"] == [] and len(client["cpu_by_process_s"]) == 3
    assert level["server"]["requests"] == s["requests"] == level["sent_including_warmup"] > 8
    assert s["errors_by_status"] == {"415": s["errors"]} and s["ok"] + s["errors"] == s["requests"]
    assert 0 < client["cpu_util"] and client["cpu_ms_per_request"] > 0
    assert "client_cpu_util" in (run_dir / "levels.csv").read_text().splitlines()[0]


def _hey(url: str, token: str | None, body: Path, clients: int, seconds: float) -> dict:
    """hey's closed loop (`clients` workers, keep-alive) for `seconds`: its summary's req/s and status counts."""
    import re
    import shutil

    cmd = [
        shutil.which("hey"),
        "-z",
        f"{seconds:g}s",
        "-c",
        str(clients),
        "-m",
        "POST",
        "-T",
        "application/octet-stream",
        "-D",
        str(body),
        *(["-H", f"Authorization: Bearer {token}"] if token else []),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=True).stdout
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)}
    return {"throughput_rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]), "statuses": statuses}


@run_if(commands=["hey"])
def test_our_client_beside_hey(running_server, tmp_path, capsys):
    """The same closed loop from our client and from `hey` (Go) on the same server: both numbers are printed; no
    speed is asserted (the machine is shared). Counts are: ours against TorchServe's counter, hey's by status."""
    import json

    from infkit.bench import promscrape
    from infkit.serve.core.auth import inference_token

    srv = running_server["server"]
    model = running_server["models"]["onnx"]
    url = f"http://127.0.0.1:{srv.inference_port}/predictions/{model}"
    metrics = f"http://127.0.0.1:{srv.metrics_port}/metrics"
    token = inference_token(running_server["state"]["key_file"])
    image = min((ROOT / "tests/resources/digits").glob("*.png"))
    clients, seconds = 8, 3
    before = promscrape.scrape(metrics, model)
    hey = _hey(url, token, image, clients, seconds)
    after = promscrape.scrape_settled(metrics, model)
    assert hey["statuses"] and set(hey["statuses"]) == {200}, hey
    assert after["ts_inference_requests_total"] - before["ts_inference_requests_total"] == sum(hey["statuses"].values())
    out = tmp_path / "bench"
    args = [
        "--url",
        url,
        "--images",
        str(image),
        "--num_thread",
        str(clients),
        "--warmup",
        "1",
        "--duration",
        str(seconds),
        "--interval",
        str(seconds),
        "--metrics-url",
        metrics,
        "--key-file",
        str(running_server["state"]["key_file"]),
        "--out",
        str(out),
    ]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "src/utils/benchmark.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (level,) = json.loads(next(out.iterdir()).joinpath("results.json").read_text())["levels"]
    ours, client = level["summary"], level["client"]
    # TorchServe counts the warm-up's requests too: all the client sent
    assert ours["errors"] == 0 and level["server"]["requests"] == level["sent_including_warmup"] > ours["requests"] > 0
    with capsys.disabled():
        print(
            f"\n{clients} clients, {seconds} s each on the same server: hey {hey['throughput_rps']:.1f} req/s, "
            f"ours {ours['throughput_rps']:.1f} req/s (ratio {ours['throughput_rps'] / hey['throughput_rps']:.2f}); "
            f"our client used {client['cpu_util']:.0%} of {client['usable_cores']} cores, "
            f"{client['cpu_ms_per_request']:.2f} ms CPU per request"
        )
