"""The PromQL that infkit's deployment files query (k8s/), the metric names each expression reads, and a
config.properties reader.

Shared by tests/unit/test_deploy_monitoring.py (names against the neuron-monitor exporter's own output) and
tests/integration/test_live_server.py (names against a live TorchServe's /metrics).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"

# PromQL words that look like names but are not metrics
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
}
# pieces of an expression that hold no metric name: strings, label matchers, ranges, grouping label lists
STRIP = [
    re.compile(r'"(?:[^"\\]|\\.)*"'),
    re.compile(r"'(?:[^'\\]|\\.)*'"),
    re.compile(r"\{[^}]*\}"),
    re.compile(r"\[[^\]]*\]"),
    re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"),
]
IDENT = re.compile(r"[a-zA-Z_:][\w:]*")
GRAFANA_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][\w:]*)")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (function names, keywords, labels and numbers left out)."""
    text = expr.replace("<<.LabelMatchers>>", "")
    for pattern in STRIP:
        text = pattern.sub(" ", text)
    text = re.sub(r"\b\d[\w.]*", " ", text)  # numbers and durations such as 1m, 1e3
    names = set()
    for match in IDENT.finditer(text):
        called = text[match.end() :].lstrip().startswith("(")
        if not called and match.group() not in KEYWORDS:
            names.add(match.group())
    return names


def expressions() -> dict[str, str]:
    """{where: PromQL} for every query in k8s/: the Grafana dashboard, the KEDA trigger, prometheus-adapter's rules."""
    found: dict[str, str] = {}
    dash = json.loads((K8S / "monitoring/grafana-dashboard.json").read_text())
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            found[f"dashboard: {panel['title']} / {target['refId']}"] = target["expr"]
    for var in dash.get("templating", {}).get("list", []):
        match = GRAFANA_LABEL_VALUES.search(var.get("definition", ""))
        if match:
            found[f"dashboard variable {var['name']}"] = match.group(1)
    for doc in yaml.safe_load_all((K8S / "keda-scaledobject.yaml").read_text()):
        for i, trigger in enumerate(doc["spec"]["triggers"]):
            found[f"KEDA trigger {i}"] = trigger["metadata"]["query"]
    rules = yaml.safe_load((K8S / "monitoring/prometheus-adapter-rules.yaml").read_text())["rules"]
    for i, rule in enumerate(rules["external"]):
        found[f"prometheus-adapter rule {i} (seriesQuery)"] = rule["seriesQuery"]
        found[f"prometheus-adapter rule {i} (metricsQuery)"] = rule["metricsQuery"]
    return found


def exposition_names(text: str) -> set[str]:
    """Metric families in a Prometheus text exposition: declared (# TYPE) or with samples. A counter declared
    without samples yet (no 5xx so far) still counts: the server emits that family."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def properties(text: str) -> dict[str, str]:
    """A TorchServe config.properties as {key: value} (comments and blank lines skipped)."""
    return dict(line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
