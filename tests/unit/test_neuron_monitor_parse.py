"""neuron-monitor's JSON stream parsed by the documented field names; malformed lines skipped with a reason
(reports written by hand from the SDK's schema: tests/helpers/neuron_monitor.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from infkit.monitor import prometheus, summary
from infkit.monitor.schema import parse_report
from infkit.monitor.stream import Stream, parse_line
from tests.helpers.neuron_monitor import ROOT, line, load, parse_exposition, value, with_util


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
