"""TorchServe's Prometheus metrics: the server-side split of a benchmark level (queue vs inference)."""

from __future__ import annotations

import re

import requests

LINE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
COUNTERS = ("ts_inference_requests_total", "ts_queue_latency_microseconds", "ts_inference_latency_microseconds")


def parse(text: str, model: str | None = None) -> dict[str, float]:
    """Sum of each ts_* counter (over versions), for one model when given."""
    out = {name: 0.0 for name in COUNTERS}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or m["name"] not in out:
            continue
        labels = dict(LABEL.findall(m["labels"] or ""))
        if model and labels.get("model_name") != model:
            continue
        out[m["name"]] += float(m["value"])
    return out


def scrape(url: str, model: str | None = None, timeout: float = 10) -> dict[str, float] | None:
    """Counters from a metrics URL, or None when it cannot be read (the benchmark goes on)."""
    try:
        r = requests.get(url, timeout=timeout)
        r.raise_for_status()
    except requests.RequestException:
        return None
    return parse(r.text, model)


def scrape_settled(url: str, model: str | None = None, tries: int = 10, pause: float = 0.3) -> dict[str, float] | None:
    """Scrape until two reads agree: the server updates its counters just after answering."""
    import time

    last = scrape(url, model)
    for _ in range(tries):
        if last is None:
            return None
        time.sleep(pause)
        now = scrape(url, model)
        if now == last:
            return now
        last = now
    return last


def split(before: dict | None, after: dict | None) -> dict | None:
    """Requests and mean milliseconds per request between two scrapes: time queued in the frontend
    (waiting for a worker or for a batch to fill), time in the server in all (TorchServe's inference
    latency counts from arrival to answer, so it includes the queue), and the rest: processing by the
    worker (decode, inference, encode) and the frontend/backend round trip."""
    if not before or not after:
        return None
    n = after["ts_inference_requests_total"] - before["ts_inference_requests_total"]
    q = after["ts_queue_latency_microseconds"] - before["ts_queue_latency_microseconds"]
    inf = after["ts_inference_latency_microseconds"] - before["ts_inference_latency_microseconds"]
    if not n:
        return {
            "requests": 0,
            "mean_queue_ms": float("nan"),
            "mean_server_ms": float("nan"),
            "mean_processing_ms": float("nan"),
        }
    return {
        "requests": round(n),
        "mean_queue_ms": q / n / 1e3,
        "mean_server_ms": inf / n / 1e3,
        "mean_processing_ms": (inf - q) / n / 1e3,
    }
