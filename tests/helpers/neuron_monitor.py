"""Helpers for the neuron-monitor tests: the hand-written reports and a strict Prometheus text-format reader.

The JSON documents (tests/resources/neuron_monitor/*.json and those derived from them here) were written by hand from
the schema in the Neuron SDK's neuron-monitor user guide; this machine has no Neuron device, so none of them was
produced by a real neuron-monitor. The metric names checked are those of the SDK's neuron-monitor-prometheus.py
exporter.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

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
