"""The handler's per-stage times on the shared live server: TorchServe shows its counters on the metrics endpoint,
and the benchmark splits a level's time per request into queue, preprocess, inference, postprocess and the rest."""

from __future__ import annotations

import json

import pytest
import requests

from infkit.bench import promscrape
from infkit.cli.bench import main as bench_main
from infkit.resources import sample_images
from infkit.serve.core.auth import auth_header, inference_token
from tests.helpers.run_if import run_if

pytestmark = [pytest.mark.slow, pytest.mark.serve, run_if(java=True)]


def test_handler_stage_counters_reach_the_metrics_endpoint(running_server):
    srv, model = running_server["server"], running_server["models"]["onnx"]
    metrics = f"http://127.0.0.1:{srv.metrics_port}/metrics"
    before = promscrape.scrape(metrics, model)
    token = inference_token(running_server["state"]["key_file"])
    url = f"http://127.0.0.1:{srv.inference_port}/predictions/{model}"
    image = sample_images("digits")[0].read_bytes()
    for _ in range(5):
        r = requests.post(url, data=image, headers=auth_header(token), timeout=30)
        assert r.status_code == 200
    after = promscrape.scrape_settled(metrics, model)
    assert after["InfkitRequests"] - before.get("InfkitRequests", 0) == 5
    assert after["InfkitBatches"] - before.get("InfkitBatches", 0) >= 1
    split = promscrape.split(before, after)
    assert split["requests"] == 5 and split["mean_inference_ms"] > 0 and split["mean_preprocess_ms"] > 0
    assert split["mean_postprocess_ms"] >= 0
    stages = sum(split[f"mean_{s}_ms"] for s in ("preprocess", "inference", "postprocess"))
    # the stages happen inside the worker's processing time; what is left is the round trip and TorchServe's own
    assert stages <= split["mean_processing_ms"] + 1e-6
    assert abs(stages + split["mean_other_ms"] - split["mean_processing_ms"]) < 1e-6


def test_benchmark_reports_the_split(running_server, tmp_path, capsys):
    srv, model = running_server["server"], running_server["models"]["onnx"]
    argv = ["--url", f"http://127.0.0.1:{srv.inference_port}/predictions/{model}", "--num_thread", "4"]
    argv += ["--duration", "3", "--warmup", "0", "--interval", "1", "--processes", "1"]
    argv += ["--metrics-url", f"http://127.0.0.1:{srv.metrics_port}/metrics"]
    argv += ["--key-file", running_server["state"]["key_file"], "--out", str(tmp_path)]
    assert bench_main(argv) == 0
    out = capsys.readouterr().out
    assert "queue" in out and "preprocess" in out and "postprocess" in out and "outside the server" in out
    (run_dir,) = tmp_path.iterdir()
    (level,) = json.loads((run_dir / "results.json").read_text())["levels"]
    split = level["server"]
    assert split["mean_inference_ms"] > 0 and split["mean_batch_size"] >= 1
    mean_ms = level["summary"]["latency_s"]["mean"] * 1e3  # --warmup 0: every request is a measured one
    assert abs(split["mean_server_ms"] + split["mean_client_rest_ms"] - mean_ms) < 1e-6
    header = (run_dir / "levels.csv").read_text().splitlines()[0]
    assert "server_preprocess_ms" in header and "client_rest_ms" in header
