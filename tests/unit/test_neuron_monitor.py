"""neuron-monitor's stream: parsing, the Prometheus exporter (scraped over HTTP) and per-level benchmark summaries.

The JSON documents here (tests/resources/neuron_monitor/*.json and those derived from them below) were written by
hand from the schema in the Neuron SDK's neuron-monitor user guide; this machine has no Neuron device, so none of
them was produced by a real neuron-monitor. The metric names checked are those of the SDK's
neuron-monitor-prometheus.py exporter.
"""

from __future__ import annotations

import copy
import csv
import http.server
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from infkit.monitor import prometheus, summary
from infkit.monitor.schema import parse_report
from infkit.monitor.stream import Stream, parse_line
from infkit.serve.config import free_ports

ROOT = Path(__file__).resolve().parents[2]
RES = ROOT / "tests/resources/neuron_monitor"
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"(,|$)')


def load(name: str) -> dict:
    return json.loads((RES / name).read_text())


def line(doc: dict) -> str:
    return json.dumps(doc, separators=(",", ":")) + "\n"


def with_util(doc: dict, core0: float, core1: float, completed=(300, 100)) -> dict:
    doc = copy.deepcopy(doc)
    for rt, util, done in zip(doc["neuron_runtime_data"], (core0, core1), completed):
        (core,) = rt["report"]["neuroncore_counters"]["neuroncores_in_use"].values()
        core["neuroncore_utilization"] = util
        rt["report"]["execution_stats"]["execution_summary"]["completed"] = done
    return doc


def with_period(doc, seconds: float):
    """Every metric group's captured period set to `seconds` (neuron-monitor's config: "period")."""
    if isinstance(doc, dict):
        return {k: seconds if k == "period" else with_period(v, seconds) for k, v in doc.items()}
    return [with_period(v, seconds) for v in doc] if isinstance(doc, list) else doc


def parse_exposition(text: str) -> dict[str, list[tuple[dict, float]]]:
    """A strict reader of Prometheus text format 0.0.4: every sample belongs to a family declared by # TYPE."""
    families: dict[str, str] = {}
    samples: dict[str, list[tuple[dict, float]]] = {}
    for raw in text.splitlines():
        if raw.startswith("# HELP "):
            continue
        if raw.startswith("# TYPE "):
            _, _, name, kind = raw.split(" ")
            assert kind in ("gauge", "counter") and name not in families, raw
            families[name] = kind
            continue
        m = SAMPLE.match(raw)
        assert m, f"not a sample line: {raw!r}"
        assert m["name"] in families, f"{m['name']} has no # TYPE line"
        labels = {}
        rest = m["labels"] or ""
        while rest:
            lm = LABEL.match(rest)
            assert lm, f"bad labels in {raw!r}"
            labels[lm[1]] = lm[2].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
            rest = rest[lm.end() :]
        samples.setdefault(m["name"], []).append((labels, float(m["value"])))
    return samples


def value(samples, name: str, **labels) -> float:
    found = [v for lab, v in samples[name] if all(lab.get(k) == str(x) for k, x in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


# -- parsing --------------------------------------------------------------------------------------
def test_a_full_report_is_parsed_by_the_documented_field_names():
    rep = parse_report(load("report_inf2_two_workers.json"))
    assert rep.instance == {
        "instance_name": "",
        "instance_id": "i-0123456789abcdef0",
        "instance_type": "inf2.xlarge",
        "availability_zone": "us-east-2a",
        "region": "us-east-2",
        "subnet_id": "subnet-0123abcd",
    }
    w0, w1 = rep.runtimes
    assert (w0.tag, w0.pid, w1.tag) == ("worker_0", 4101, "worker_1")
    assert w0.utilization == {"0": 42.5} and w1.utilization == {"1": 37.5}
    assert (w0.host_bytes, w0.device_bytes) == (1e9, 6e7)
    assert w0.core_memory["0"]["constants"] == 45e6 and w0.core_memory["0"]["model_shared_scratchpad"] == 0
    assert w0.total_latency["p50"] == 0.00085 and w0.device_latency["p99"] == 0.0008
    assert w0.errors["transient"] == 1 and w0.status["completed"] == 300
    assert w0.vcpu == {"user": 12.5, "system": 2.5}
    assert rep.memory["memory_total_bytes"] == 16e9 and rep.vcpu_count == 4
    assert rep.ecc == [
        ("0", {"mem_ecc_corrected": 1, "mem_ecc_uncorrected": 0, "sram_ecc_corrected": 0, "sram_ecc_uncorrected": 0})
    ]
    assert rep.period == pytest.approx(1.346411129)


def test_an_idle_report_with_nulls_and_missing_groups_parses_to_empty_parts():
    rep = parse_report(load("report_idle.json"))
    (rt,) = rep.runtimes
    assert rt.tag == "4101"  # no tag: neuron-monitor's rule, the pid
    assert rt.utilization == {"0": 0.0} and rt.total_latency == {} and rt.device_latency == {}
    assert rt.host_bytes is None and rep.memory == {} and rep.ecc == [] and rep.vcpu_count is None
    assert rep.instance["instance_type"] == "inf2.xlarge" and rep.instance["region"] == ""


def test_wrong_types_inside_a_report_are_dropped_not_raised():
    doc = {
        "neuron_runtime_data": [
            "not an object",
            {
                "pid": "12",
                "neuron_runtime_tag": None,
                "report": {
                    "neuroncore_counters": {
                        "period": "1s",
                        "neuroncores_in_use": {
                            "0": {"neuroncore_utilization": "42"},
                            "1": 7,
                            "2": {"neuroncore_utilization": 5},
                        },
                    },
                    "execution_stats": {
                        "error_summary": [1, 2],
                        "execution_summary": {"completed": True, "timed_out": 2},
                        "latency_stats": {"total_latency": {"p50": None, "p99": 0.5}},
                    },
                    "memory_used": {
                        "neuron_runtime_used_bytes": {
                            "host": "lots",
                            "neuron_device": 10,
                            "usage_breakdown": {"neuroncore_memory_usage": [1]},
                        }
                    },
                    "neuron_runtime_vcpu_usage": None,
                },
            },
        ],
        "system_data": {
            "memory_info": "n/a",
            "vcpu_usage": {"usage_data": []},
            "neuron_hw_counters": {"neuron_devices": {"0": 1}},
        },
        "instance_info": ["inf2"],
    }
    rep = parse_report(doc)
    (rt,) = rep.runtimes
    assert rt.tag == "unknown" and rt.utilization == {"2": 5.0} and rt.total_latency == {"p99": 0.5}
    assert rt.status == {"timed_out": 2.0} and rt.errors == {} and rt.core_memory == {} and rt.vcpu == {}
    assert (rt.host_bytes, rt.device_bytes) == (None, 10.0) and rep.period is None and rep.ecc == []
    assert rep.instance["instance_type"] == "" and rep.vcpu_count is None
    exp = prometheus.Exporter()
    exp.update(rep)
    assert value(parse_exposition(exp.render()), "neuroncore_utilization_ratio", neuroncore=2) == 0.05
    assert summary.summarize([rep])["total_latency_s"] == {"p99": 0.5}


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("{not json", "not JSON"),
        ('{"neuron_runtime_data": [', "not JSON"),
        ("[1, 2, 3]", "not a neuron-monitor report"),
        ('{"hello": "world"}', "not a neuron-monitor report"),
        ('{"neuron_runtime_data": 5, "instance_info": {}}', "not a list"),
    ],
)
def test_malformed_lines_are_rejected_with_a_reason(bad, reason):
    with pytest.raises(ValueError, match=reason):
        parse_line(bad)


def test_a_stream_skips_malformed_lines_with_a_warning_and_keeps_going(tmp_path):
    full = load("report_inf2_two_workers.json")
    path = tmp_path / "nm.jsonl"
    path.write_text(line(full) + "garbage\n\n" + '{"x": 1}\n' + line(with_util(full, 10, 20)) + line(full)[:50])
    warnings = []
    stream = Stream(str(path), warn=warnings.append).start()
    deadline = time.monotonic() + 10
    while stream.reports < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    stream.stop()
    assert stream.reports == 2 and [r.runtimes[0].utilization["0"] for _, r in stream.snapshot()] == [42.5, 10]
    assert len(warnings) == 2 and "line 2 skipped: not JSON" in warnings[0] and "line 3" in warnings[1]
    # the unfinished last line is being written: the follower waits for its end instead of warning
    with open(path, "a") as f:
        f.write(line(full)[50:])
    stream2 = Stream(str(path), warn=warnings.append).start()
    deadline = time.monotonic() + 10
    while stream2.reports < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stream2.stop()
    assert stream2.reports == 3 and stream2.skipped == 2


def test_skip_existing_counts_only_reports_written_after_the_start(tmp_path):
    full = load("report_inf2_two_workers.json")
    path = tmp_path / "nm.jsonl"
    path.write_text(line(full) + line(full)[:40])  # neuron-monitor is in the middle of a line
    warnings = []
    stream = Stream(str(path), skip_existing=True, warn=warnings.append).start()
    time.sleep(0.3)
    with open(path, "a") as f:
        f.write(line(full)[40:] + line(with_util(full, 99, 0)))
    assert stream.wait_past(0, timeout=10)
    stream.stop()
    assert [r.runtimes[0].utilization["0"] for _, r in stream.snapshot()] == [99] and warnings == []


def test_a_missing_input_file_is_one_error_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "src/neuron_exporter.py"), "--input", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: --input ") and "Traceback" not in proc.stderr
    assert "no such file" in proc.stderr and "neuron-monitor" in proc.stderr


# -- the Prometheus exporter --------------------------------------------------------------------
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


# -- per-level summaries ----------------------------------------------------------------------
def test_level_summary_keeps_reports_whose_period_middle_falls_in_the_span():
    full = load("report_inf2_two_workers.json")  # period 1.35 s
    reps = [(t, parse_report(with_util(full, u, u / 2))) for t, u in ((10.5, 99), (11.2, 40), (12.2, 60), (14.0, 5))]
    got = summary.in_span(reps, 10.0, 13.0)
    assert [r.runtimes[0].utilization["0"] for r in got] == [40, 60]  # 10.5 - 0.67 is before the level starts
    n = summary.summarize(got)
    assert n["reports"] == 2
    assert n["neuroncore_utilization_pct"] == {"0": {"mean": 50, "max": 60}, "1": {"mean": 25, "max": 30}}
    assert n["neuroncore_utilization_mean_pct"] == 37.5 and n["neuroncore_utilization_max_pct"] == 60
    assert n["device_memory_bytes"] == {"mean": 12e7, "max": 12e7}  # two workers' device memory added
    assert n["host_memory_bytes"]["max"] == 1.9e9
    # percentiles weighted by executions completed: worker_0 300, worker_1 100 per period
    assert n["total_latency_s"]["p50"] == pytest.approx((300 * 0.00085 + 100 * 0.00095) / 400)
    assert n["total_latency_s"]["p0"] == 0.0008 and n["total_latency_s"]["p100"] == 0.002
    assert n["executions"] == {"completed": 800, "errors": 2, "errors_by_type": {"transient": 2}}
    assert summary.summarize([]) == {"reports": 0}
    idle = summary.summarize([parse_report(load("report_idle.json"))])
    assert idle["total_latency_s"] is None and idle["neuroncore_utilization_mean_pct"] == 0


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"0": 1.0}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def ok_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/predictions/fake"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.slow
def test_benchmark_beside_neuron_monitor_writes_neuron_columns_and_plot(ok_server, tmp_path, capsys):
    from infkit.cli import bench as cli

    full = load("report_inf2_two_workers.json")
    nm = tmp_path / "nm.jsonl"
    nm.write_text(line(with_util(full, 1, 1)))  # written before the benchmark: not counted
    stop = threading.Event()

    def neuron_monitor():  # stands in for `neuron-monitor > nm.jsonl` with a 0.25 s period
        with open(nm, "a") as f:
            f.write("oops, not json\n")
            while not stop.wait(0.25):
                f.write(line(with_period(with_util(full, 70, 30), 0.25)))
                f.flush()

    writer = threading.Thread(target=neuron_monitor, daemon=True)
    writer.start()
    try:
        images = sorted((ROOT / "tests/resources/digits").glob("*.png"))[:2]
        code = cli.main(
            [
                "--url",
                ok_server,
                "--images",
                *map(str, images),
                "--sweep",
                "1,2",
                "--duration",
                "1.5",
                "--warmup",
                "0.2",
                "--interval",
                "1",
                "--metrics-url",
                "none",
                "--token",
                "t",
                "--neuron-monitor",
                str(nm),
                "--out",
                str(tmp_path / "bench"),
            ]
        )
    finally:
        stop.set()
        writer.join(timeout=5)
    assert code == 0
    out, err = capsys.readouterr()
    assert "warning: neuron-monitor line 1 skipped: not JSON" in err
    assert "neuron: " in out and "NeuronCore utilisation mean 50.0% over 2 core(s), max 70.0%" in out
    (run_dir,) = (tmp_path / "bench").iterdir()
    levels = json.loads((run_dir / "results.json").read_text())["levels"]
    for lv in levels:
        n = lv["neuron"]
        assert n["reports"] >= 2, n
        assert n["neuroncore_utilization_pct"] == {"0": {"mean": 70, "max": 70}, "1": {"mean": 30, "max": 30}}
        assert n["device_memory_bytes"]["max"] == 12e7 and n["total_latency_s"]["p99"] > 0
    with open(run_dir / "levels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["level"] for r in rows] == ["1.0", "2.0"]
    for r in rows:
        assert float(r["neuroncore_util_mean_pct"]) == 50 and float(r["neuroncore_util_max_pct"]) == 70
        assert float(r["neuron_device_mem_max_bytes"]) == 12e7 and int(r["neuron_reports"]) >= 2
        assert float(r["neuron_latency_p50_s"]) == pytest.approx((300 * 0.00085 + 100 * 0.00095) / 400)
    assert (run_dir / "neuron.png").stat().st_size > 10_000


def test_benchmark_refuses_a_missing_neuron_monitor_file(tmp_path, capsys):
    from infkit.cli import bench as cli

    code = cli.main(
        [
            "--url",
            "http://127.0.0.1:9/predictions/x",
            "--neuron-monitor",
            str(tmp_path / "nm.jsonl"),
            "--out",
            str(tmp_path / "bench"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --neuron-monitor ") and "no such file" in err
    assert not (tmp_path / "bench").exists()
