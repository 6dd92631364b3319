"""The benchmark's arithmetic: records, summaries, windows, schedules, Prometheus parsing."""

import math

import pytest

from infkit.bench import promscrape
from infkit.bench.loadgen import schedule
from infkit.bench.stats import Record, client_cpu, stable, summarize, verdict, window

METRICS = """# HELP ts_inference_requests_total Total number of inference requests.
# TYPE ts_inference_requests_total counter
ts_inference_requests_total{model_name="a",model_version="default",hostname="h",} 10.0
ts_inference_requests_total{model_name="b",model_version="default",hostname="h",} 99.0
ts_queue_latency_microseconds{model_name="a",model_version="default",hostname="h",} 5000.0
ts_inference_latency_microseconds{model_name="a",model_version="default",hostname="h",} 20000.0
Requests2XX{Level="Host",Hostname="h",} 109.0
"""


def test_latency_counts_from_the_intended_send_time():
    r = Record(intended=1.0, start=1.5, end=1.7, status=200)
    assert r.latency == pytest.approx(0.7) and r.lag == pytest.approx(0.5)


def test_summary_counts_every_status_and_skips_warmup():
    recs = (
        [Record(0, 0, 0.1, 200, warmup=True)]
        + [Record(i, i, i + 0.01 * (i + 1), 200) for i in range(8)]
        + [Record(9, 9, 9.5, 415), Record(10, 10, 10.2, 0)]
    )
    s = summarize(recs, duration=10.0)
    assert s["requests"] == 10 and s["ok"] == 8 and s["errors"] == 2
    assert s["errors_by_status"] == {"0": 1, "415": 1} and s["error_rate"] == pytest.approx(0.2)
    # throughput and latency are the successful answers' (8 in 10 s); every answer is beside them
    assert s["throughput_rps"] == pytest.approx(0.8) and s["responses_rps"] == pytest.approx(1.0)
    assert s["latency_s"]["max"] == pytest.approx(0.08) and s["all_latency_s"]["max"] == pytest.approx(0.5)
    assert s["latency_s"]["p50"] <= s["latency_s"]["p90"] <= s["latency_s"]["p99"] <= s["latency_s"]["max"]


def test_errors_are_not_throughput_and_fail_the_level():
    failing = [Record(i, i, i + 0.001, 404) for i in range(50)]
    s = summarize(failing, duration=1.0)
    assert s["throughput_rps"] == 0.0 and s["responses_rps"] == 50.0 and s["error_rate"] == 1.0
    assert math.isnan(s["latency_s"]["p50"]) and s["all_latency_s"]["p50"] == pytest.approx(0.001)
    assert verdict(s) == "every one of its 50 requests failed"
    # 2 errors in 100: above the default 1 %, within a 5 % limit; 1 in 100 is at the limit, not above it
    two = summarize([Record(i, i, i + 0.01, 503 if i < 2 else 200) for i in range(100)], 10.0)
    assert verdict(two) == "error rate 2.0% > --max-error-rate 1.0%" and verdict(two, 0.05) is None
    assert verdict(summarize([Record(i, i, i + 0.01, 503 if i < 1 else 200) for i in range(100)], 10.0)) is None
    assert verdict(summarize([], 1.0)) == "no request completed in the measured window"
    w = window(failing, 0.0, 100.0)
    assert w["completed"] == 0 and w["errors"] == 50 and w["throughput_rps"] == 0.0


def test_open_loop_lag_is_reported():
    recs = [Record(0, 0.0, 0.01, 200), Record(1, 1.2, 1.21, 200)]
    s = summarize(recs, 2.0, lag_tolerance=0.005)
    assert s["client_lag"]["late_requests"] == 1 and s["client_lag"]["max_s"] == pytest.approx(0.2)


def test_windows_and_stability():
    recs = [Record(t, t, t + 0.01, 200) for t in [i * 0.1 for i in range(100)]]
    w = window(recs, 2.0, 4.0)
    assert w["completed"] == 20 and w["throughput_rps"] == pytest.approx(10.0)
    same = [{"throughput_rps": 10.0, "p50": 0.01}] * 3
    assert stable(same, 3, 0.1)
    assert not stable(same[:2], 3, 0.1)
    assert not stable([*same[:2], {"throughput_rps": 20.0, "p50": 0.01}], 3, 0.1)
    assert not stable([{"throughput_rps": 0.0, "p50": math.nan}] * 3, 3, 0.1)


def test_schedules():
    const = schedule(4.0, "constant")
    assert [const(i) for i in range(3)] == [0.0, 0.25, 0.5]
    poisson = schedule(100.0, "poisson", seed=1)
    offsets = [poisson(i) for i in range(2000)]
    assert offsets == sorted(offsets)
    assert 2000 / offsets[-1] == pytest.approx(100.0, rel=0.1)
    with pytest.raises(ValueError):
        schedule(0, "constant")
    with pytest.raises(ValueError):
        schedule(1, "bursty")


def test_prometheus_split_per_model():
    before = promscrape.parse(METRICS, "a")
    assert before == {
        "ts_inference_requests_total": 10.0,
        "ts_queue_latency_microseconds": 5000.0,
        "ts_inference_latency_microseconds": 20000.0,
    }
    after = {
        "ts_inference_requests_total": 20.0,
        "ts_queue_latency_microseconds": 15000.0,
        "ts_inference_latency_microseconds": 60000.0,
    }
    split = promscrape.split(before, after)
    assert split == {"requests": 10, "mean_queue_ms": 1.0, "mean_server_ms": 4.0, "mean_processing_ms": 3.0}
    assert promscrape.split(None, after) is None
    assert promscrape.scrape("http://127.0.0.1:9/metrics") is None


def test_client_cpu_report_and_bottleneck_guard():
    # 2 usable cores, 10 s: a child process at 0.3 core and this one at 0.1: 0.4 cores, 20 %, no warning
    calm = client_cpu([1.0, 3.0], wall_s=10.0, cores=2, requests=4000, load_processes=1)
    assert calm["cores_used"] == pytest.approx(0.4) and calm["cpu_util"] == pytest.approx(0.2)
    assert calm["busiest_process_util"] == pytest.approx(0.3) and calm["cpu_ms_per_request"] == pytest.approx(1.0)
    assert not calm["bottleneck"] and calm["warnings"] == []
    # one process near a full core while the machine has another: more processes is the fix
    one_core = client_cpu([9.0], wall_s=10.0, cores=2, requests=100, load_processes=1)
    assert one_core["bottleneck"] and "--processes" in one_core["warnings"][0] and "90%" in one_core["warnings"][0]
    # every process busy and no core left: the client must run elsewhere (or load less)
    full = client_cpu([0.5, 8.5, 8.5], wall_s=10.0, cores=2, requests=100, load_processes=2)
    assert full["cpu_util"] == pytest.approx(0.875) and full["bottleneck"]
    assert "another machine" in full["warnings"][0] and "--processes" not in full["warnings"][0]
    # a single-core machine: one busy process is the whole machine
    assert "another machine" in client_cpu([9.0], 10.0, 1, 100, 1)["warnings"][0]
    # the limit is the user's
    assert not client_cpu([9.0], 10.0, 2, 100, 1, limit=0.95)["bottleneck"]
    assert math.isnan(client_cpu([0.0], 1.0, 2, 0, 1)["cpu_ms_per_request"])


# the handler's counters as TorchServe 0.12 shows them (model_metrics_auto_detect), beside one ts_* counter
HANDLER_METRICS = """\
# TYPE InfkitInferenceMs counter
InfkitInferenceMs{ModelName="a",Level="Model",Hostname="vm",} 300.0
InfkitInferenceMs{ModelName="b",Level="Model",Hostname="vm",} 999.0
InfkitPreprocessMs{ModelName="a",Level="Model",Hostname="vm",} 100.0
InfkitPostprocessMs{ModelName="a",Level="Model",Hostname="vm",} 20.0
InfkitRequests{ModelName="a",Level="Model",Hostname="vm",} 10.0
InfkitBatches{ModelName="a",Level="Model",Hostname="vm",} 4.0
ts_inference_requests_total{model_name="a",model_version="default",hostname="vm",} 10.0
ts_queue_latency_microseconds{model_name="a",model_version="default",hostname="vm",} 5000.0
ts_inference_latency_microseconds{model_name="a",model_version="default",hostname="vm",} 20000.0
"""


def test_prometheus_split_per_stage():
    before = promscrape.parse(HANDLER_METRICS, "a")
    assert before["InfkitInferenceMs"] == 300.0 and before["InfkitBatches"] == 4.0
    after = {
        "ts_inference_requests_total": 20.0,
        "ts_queue_latency_microseconds": 15000.0,
        "ts_inference_latency_microseconds": 80000.0,
        "InfkitPreprocessMs": 110.0,
        "InfkitInferenceMs": 320.0,
        "InfkitPostprocessMs": 21.0,
        "InfkitRequests": 20.0,
        "InfkitBatches": 6.0,
    }
    split = promscrape.split(before, after)
    # 10 requests: queue 1 ms + processing 5 ms = 6 ms; processing = 1 + 2 + 0.1 + other 1.9
    assert split["mean_queue_ms"] == pytest.approx(1.0) and split["mean_processing_ms"] == pytest.approx(5.0)
    assert split["mean_preprocess_ms"] == pytest.approx(1.0) and split["mean_inference_ms"] == pytest.approx(2.0)
    assert split["mean_postprocess_ms"] == pytest.approx(0.1) and split["mean_other_ms"] == pytest.approx(1.9)
    assert split["mean_batch_size"] == pytest.approx(5.0)
    # a handler without the counters: the queue/processing split only
    plain = promscrape.split(promscrape.parse(METRICS, "a"), {k: v for k, v in after.items() if k.startswith("ts_")})
    assert "mean_preprocess_ms" not in plain and plain["requests"] == 10
