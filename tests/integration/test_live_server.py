"""The live server end to end: tests/test_serve against every packaged model (torchscript by the plain
torch-model-archiver command; onnx, onnx_int8 and export by src/package.py), the metrics the deployment queries, and
a short soak."""

from __future__ import annotations

import subprocess

import pytest
import requests

from infkit.demo import live_tests_command
from tests.conftest import ROOT
from tests.helpers.run_if import run_if

pytestmark = [pytest.mark.slow, pytest.mark.serve, run_if(java=True)]
# onnx takes the whole live suite. The hostile cases (test_serve_hostile.py) are the front's and TorchServe's, the
# same whatever the archive: once. The plain archive (torchscript) takes every other test: it is made by another
# command, and its handler config and eager weights (explanations) are the archive's. The int8 and AOTInductor
# artifacts of the same model take the requests that go through the model (the rest of the suite is the handler's,
# the same code for every backend).
SUITE = {
    "onnx": None,
    "torchscript": "not hostile",
    "onnx_int8": "inference or original or grpc or batch",
    "export": "inference or original or grpc or batch",
}


@pytest.mark.parametrize("backend", list(SUITE))
def test_live_suite_passes(running_server, backend):
    srv = running_server["server"]
    cmd = live_tests_command(
        srv, running_server["models"][backend], running_server["state"]["key_file"], tests_dir=ROOT / "tests/test_serve"
    )
    if SUITE[backend]:
        cmd += ["-k", SUITE[backend]]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1]


def test_short_soak_has_no_errors_and_the_logs_stay_flat(running_server):
    """The soak of docs/reliability.md made short: open loop at 70 % of measured capacity. No speed is asserted;
    TorchServe's logs must not grow with the traffic (no per-request lines, nothing written twice)."""
    from infkit.bench import loadgen, soak
    from infkit.resources import sample_images
    from infkit.serve.core.auth import inference_token

    srv = running_server["server"]
    url = f"http://127.0.0.1:{srv.inference_port}/predictions/{running_server['models']['onnx']}"
    target = loadgen.Target(
        url, [p.read_bytes() for p in sample_images("digits")], inference_token(running_server["state"]["key_file"])
    )
    rate = 0.7 * soak.capacity(target, clients=8, seconds=3, echo=lambda _: None)
    result = soak.soak(target, running_server["state_dir"], rate, duration=10, window=5, echo=lambda _: None)
    s = result["summary"]
    assert s["requests"] > 20 and s["errors"] == 0, s
    assert [w["window"] for w in result["windows"]] == [1, 2]
    assert result["memory_mib"]["workers_start"] > 50 and result["memory_mib"]["frontend_end"] > 50
    assert result["logs"]["bytes_per_request"] < 20, result["logs"]
    assert "| window |" in soak.markdown(result)


def test_dashboard_metrics_are_emitted_by_torchserve(running_server):
    """Every TorchServe metric that k8s/ queries (dashboard, KEDA, prometheus-adapter) is in this live server's
    /metrics; the neuron-monitor ones are checked against the exporter in tests/unit/test_deploy_monitoring.py."""
    from tests.deploy_promql import exposition_names
    from tests.unit.test_deploy_monitoring import TORCHSERVE_METRICS

    srv = running_server["server"]
    text = requests.get(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=30).text
    live = exposition_names(text)
    assert TORCHSERVE_METRICS <= live, f"not emitted by TorchServe: {sorted(TORCHSERVE_METRICS - live)}"
    # traffic from the tests above shows up in the counters the scaling signal divides
    samples = [
        ln
        for ln in text.splitlines()
        if ln.startswith(("ts_inference_requests_total{", "ts_queue_latency_microseconds{"))
    ]
    assert samples and all(float(ln.rsplit(" ", 1)[1]) > 0 for ln in samples), samples
