"""neuron-monitor beside the benchmark: per-level summaries, NeuronCore columns and plot (reports written by hand
from the SDK's schema: tests/helpers/neuron_monitor.py)."""

from __future__ import annotations

import csv
import http.server
import json
import threading

import pytest

from infkit.monitor import summary
from infkit.monitor.schema import parse_report
from tests.helpers.neuron_monitor import ROOT, line, load, with_period, with_util


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
