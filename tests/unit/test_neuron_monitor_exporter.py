"""The neuron-monitor Prometheus exporter: the SDK exporter's names and labels, scraped over HTTP (reports written
by hand from the SDK's schema: tests/helpers/neuron_monitor.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import requests

from infkit.monitor import prometheus
from infkit.monitor.schema import parse_report
from infkit.serve.core.config import free_ports
from tests.helpers.neuron_monitor import ROOT, line, load, parse_exposition, value, with_util


def test_exposition_has_the_sdk_exporters_names_labels_and_counters():
    exp = prometheus.Exporter()
    full = load("report_inf2_two_workers.json")
    exp.update(parse_report(full))
    exp.update(parse_report(with_util(full, 80, 0)))
    s = parse_exposition(exp.render())
    inst = {
        "instance_type": "inf2.xlarge",
        "instance_id": "i-0123456789abcdef0",
        "region": "us-east-2",
        "availability_zone": "us-east-2a",
        "subnet_id": "subnet-0123abcd",
        "instance_name": "",
    }
    # gauges: the latest report, utilisation as a ratio
    assert value(s, "neuroncore_utilization_ratio", runtime_tag="worker_0", neuroncore=0, **inst) == 0.8
    assert value(s, "neuroncore_utilization_ratio", runtime_tag="worker_1", neuroncore=1) == 0.0
    assert value(s, "neuron_runtime_memory_used_bytes", runtime_tag="worker_0", memory_location="host") == 1e9
    assert value(s, "neuron_runtime_memory_used_bytes", runtime_tag="worker_1", memory_location="neuron_device") == 6e7
    assert value(s, "execution_latency_seconds", runtime_tag="worker_0", percentile="p99") == 0.0012
    assert {lab["percentile"] for lab, _ in s["execution_latency_seconds"]} == {
        "p0",
        "p1",
        "p25",
        "p50",
        "p75",
        "p99",
        "p100",
    }
    assert value(s, "neuroncore_memory_usage_constants", runtime_tag="worker_1", neuroncore=1) == 45e6
    assert value(s, "neuron_runtime_vcpu_usage_ratio", runtime_tag="worker_0", usage_type="user") == 0.125
    assert value(s, "system_memory_used_bytes") == 6e9 and value(s, "system_vcpu_count") == 4
    assert value(s, "system_vcpu_usage_ratio", usage_type="system") == pytest.approx(0.2287)
    assert value(s, "instance_info", **inst) == 1
    # counters: each report's per-period counts add up
    assert value(s, "execution_status_total", runtime_tag="worker_0", status_type="completed") == 600
    assert value(s, "execution_errors_total", runtime_tag="worker_0", error_type="transient") == 2
    assert value(s, "execution_errors_total", runtime_tag="worker_1", error_type="hardware") == 0
    assert value(s, "hardware_ecc_events_total", neuron_device_index=0, event_type="mem_ecc_corrected") == 2
    assert value(s, "neuron_monitor_reports_total") == 2
    assert "# TYPE execution_errors_total counter" in exp.render()


def test_label_values_are_escaped():
    text = prometheus.sample("m", {"a": 'say "hi"\\\n'}, 1)
    assert text == 'm{a="say \\"hi\\"\\\\\\n"} 1.0'
    ((labels, v),) = parse_exposition(f"# TYPE m gauge\n{text}\n")["m"]
    assert labels == {"a": 'say "hi"\\\n'} and v == 1.0


def _scrape(url: str, want, timeout: float = 30):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = requests.get(url, timeout=5)
            last = parse_exposition(r.text)
            if want(last):
                return r, last
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never showed what was expected; last: {last}")


@pytest.mark.slow
def test_the_exporter_serves_a_piped_stream_over_http_and_stops_cleanly_on_ctrl_c():
    port = free_ports()["inference_port"]
    full = load("report_inf2_two_workers.json")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "src/neuron_exporter.py"), "--port", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        proc.stdin.write(line(full) + "this is not json\n")
        proc.stdin.flush()
        url = f"http://127.0.0.1:{port}/metrics"
        r, s = _scrape(url, lambda s: s.get("neuron_monitor_skipped_lines_total", [({}, 0)])[0][1] == 1)
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert value(s, "neuroncore_utilization_ratio", runtime_tag="worker_0", neuroncore=0) == 0.425
        proc.stdin.write(line(with_util(full, 64, 32)))
        proc.stdin.flush()
        _, s = _scrape(url, lambda s: value(s, "neuron_monitor_reports_total") == 2)
        assert value(s, "neuroncore_utilization_ratio", runtime_tag="worker_1", neuroncore=1) == 0.32
        assert value(s, "execution_status_total", runtime_tag="worker_1", status_type="completed") == 200
        assert requests.get(f"http://127.0.0.1:{port}/nothing", timeout=5).status_code == 404
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "warning: neuron-monitor line 2 skipped: not JSON" in err
    assert "first report: instance type inf2.xlarge, 2 Neuron runtime(s)" in out
    assert "stopped: 2 report(s) read, 1 line(s) skipped" in out
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)


@pytest.mark.slow
def test_the_exporter_follows_a_file_and_refuses_a_busy_port(tmp_path):
    ports = free_ports()
    port = ports["inference_port"]
    path = tmp_path / "nm.jsonl"
    path.write_text(line(load("report_idle.json")))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "src/neuron_exporter.py"), "--port", str(port), "--input", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        _, s = _scrape(url, lambda s: "neuroncore_utilization_ratio" in s)
        assert value(s, "neuroncore_utilization_ratio", runtime_tag="4101") == 0.0
        assert "execution_latency_seconds" not in s  # null latency in an idle period: no sample, not a zero
        with open(path, "a") as f:
            f.write(line(load("report_inf2_two_workers.json")))
        _, s = _scrape(url, lambda s: "execution_latency_seconds" in s)
        busy = subprocess.run(
            [sys.executable, str(ROOT / "src/neuron_exporter.py"), "--port", str(port), "--input", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert busy.returncode == 2 and busy.stderr.startswith("error: cannot listen on 127.0.0.1:")
        assert "Traceback" not in busy.stderr
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
