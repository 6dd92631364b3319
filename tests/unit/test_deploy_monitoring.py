"""k8s/monitoring: every PromQL expression of the dashboard, the KEDA trigger and the prometheus-adapter rules names
only metrics that TorchServe 0.12 or the neuron-monitor exporter emits.

Neuron names are checked here against the exporter's own output, rendered from the neuron-monitor JSON fixtures
(tests/resources/neuron_monitor/, written by hand from the SDK's schema). TorchServe names are checked against a
live TorchServe in tests/integration/test_live_server.py (test_dashboard_metrics_are_emitted_by_torchserve)."""

from __future__ import annotations

import json

import pytest
import yaml

from infkit.monitor import prometheus
from infkit.monitor.schema import parse_report
from tests.deploy_promql import K8S, ROOT, exposition_names, expressions, metric_names

# the TorchServe metric families the queries use; the live test checks each is in a real server's /metrics
TORCHSERVE_METRICS = {
    "ts_inference_requests_total",
    "ts_inference_latency_microseconds",
    "ts_queue_latency_microseconds",
    "Requests4XX",
    "Requests5XX",
    "QueueTime",
    "PredictionTime",
}


@pytest.fixture(scope="module")
def exporter_names() -> set[str]:
    exporter = prometheus.Exporter()
    for path in sorted((ROOT / "tests/resources/neuron_monitor").glob("*.json")):
        exporter.update(parse_report(json.loads(path.read_text())))
    return exposition_names(exporter.render())


def test_metric_name_extraction_skips_functions_labels_and_keywords():
    expr = (
        'sum by (model_name) (rate(ts_x{a="b", c=~"d|e"}[1m])) / on(pod) group_left(node) '
        "max_over_time(other_metric[5m:15s]) > 0 or vector(1e3)"
    )
    assert metric_names(expr) == {"ts_x", "other_metric"}
    assert metric_names('avg(neuroncore_utilization_ratio{runtime_tag="sum"})') == {"neuroncore_utilization_ratio"}


def test_exporter_fixture_output_has_the_neuron_metrics(exporter_names):
    assert {
        "neuroncore_utilization_ratio",
        "neuron_runtime_memory_used_bytes",
        "execution_latency_seconds",
        "execution_errors_total",
    } <= exporter_names


def test_every_expression_names_only_emitted_metrics(exporter_names):
    found = expressions()
    assert len(found) >= 15, sorted(found)
    unknown = {}
    for where, expr in found.items():
        names = metric_names(expr)
        assert names, f"{where}: no metric name found in {expr!r}"
        missing = names - exporter_names - TORCHSERVE_METRICS
        if missing:
            unknown[where] = sorted(missing)
    assert not unknown, f"metrics neither TorchServe nor the neuron-monitor exporter emits: {unknown}"
    used = set().union(*(metric_names(e) for e in found.values()))
    assert TORCHSERVE_METRICS <= used, f"declared but unused: {TORCHSERVE_METRICS - used}"


def test_dashboard_has_the_panels_operators_need():
    dash = json.loads((K8S / "monitoring/grafana-dashboard.json").read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    text = " ".join(p["title"].lower() for p in panels)
    for needed in ("request rate", "p50", "p99", "errors", "neuroncore utilisation", "device memory"):
        assert needed in text, needed
    assert all(p["targets"] and p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in panels)
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    # no two panels overlap on Grafana's 24-column grid
    cells = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area, p["title"]
        cells |= area


def test_queries_use_only_labels_the_scrape_config_sets():
    config = yaml.safe_load((K8S / "monitoring/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"torchserve", "neuron-monitor"}
    added = {r["target_label"] for r in jobs["torchserve"]["relabel_configs"] if "target_label" in r}
    assert {"namespace", "variant", "pod"} <= added
    scaling = " ".join(e for where, e in expressions().items() if where.startswith(("KEDA", "prometheus-adapter")))
    for label in ("namespace", "variant"):
        assert f"{label}=" in scaling or f"{label}!=" in scaling
