"""The server's Prometheus metrics: the server-side split of a benchmark level, as perf_analyzer reports it: queue,
preprocess, inference, postprocess (the infkit handler's counters) and the rest. TorchServe names them; the Ray
engine's metrics port shows the same names (infkit.serve.ray.head), reported by Ray about once a second."""

from __future__ import annotations

import re

import requests

LINE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
COUNTERS = ("ts_inference_requests_total", "ts_queue_latency_microseconds", "ts_inference_latency_microseconds")
#: the infkit handler's counters (handlers/infkit_handler.py): request-milliseconds per stage, requests, batches
STAGES = {"preprocess": "InfkitPreprocessMs", "inference": "InfkitInferenceMs", "postprocess": "InfkitPostprocessMs"}
HANDLER_COUNTERS = (*STAGES.values(), "InfkitRequests", "InfkitBatches")


def parse(text: str, model: str | None = None) -> dict[str, float]:
    """Sum of each ts_* counter (over versions) and of the handler's counters (over workers), for one model when
    given; a handler counter TorchServe has not shown yet is absent."""
    out = {name: 0.0 for name in COUNTERS}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or m["name"] not in COUNTERS + HANDLER_COUNTERS:
            continue
        labels = dict(LABEL.findall(m["labels"] or ""))
        if model and labels.get("model_name", labels.get("ModelName")) != model:
            continue
        out[m["name"]] = out.get(m["name"], 0.0) + float(m["value"])
    return out


#: a line only Ray's exposition has: its counters reach the metrics port on Ray's report period, not at once
RAY_MARKER = "ray_serve_"
#: seconds between the reads that must agree on Ray (its metrics report period is 1 s by default)
RAY_SETTLE = 1.5


def _text(url: str, timeout: float) -> str | None:
    try:
        r = requests.get(url, timeout=timeout)
        r.raise_for_status()
    except requests.RequestException:
        return None
    return r.text


def scrape(url: str, model: str | None = None, timeout: float = 10) -> dict[str, float] | None:
    """Counters from a metrics URL, or None when it cannot be read (the benchmark goes on)."""
    text = _text(url, timeout)
    return None if text is None else parse(text, model)


def scrape_settled(url: str, model: str | None = None, tries: int = 10, pause: float = 0.3) -> dict[str, float] | None:
    """Scrape until two reads agree: the server updates its counters just after answering (TorchServe), or on its
    metrics report period (Ray: reads RAY_SETTLE s apart)."""
    import time

    text = _text(url, 10)
    last = None if text is None else parse(text, model)
    if text is not None and RAY_MARKER in text:
        pause = max(pause, RAY_SETTLE)
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
    """Requests and mean milliseconds per request between two scrapes: time queued in the frontend (waiting for a
    worker or for a batch to fill), time in the server in all (TorchServe's inference latency counts from arrival
    to answer, so it includes the queue), and processing (the rest of it). With the infkit handler's counters,
    processing splits further into preprocess (decode, resize, the batch tensor), inference (the model call),
    postprocess (softmax, top-k, answers) and other (the frontend/worker round trip, batch assembly, TorchServe's
    Python around the handler); a stage's time counts once for every request of its batch."""
    if not before or not after:
        return None
    n = after["ts_inference_requests_total"] - before["ts_inference_requests_total"]
    q = after["ts_queue_latency_microseconds"] - before["ts_queue_latency_microseconds"]
    inf = after["ts_inference_latency_microseconds"] - before["ts_inference_latency_microseconds"]
    nan = float("nan")
    if not n:
        return {"requests": 0, "mean_queue_ms": nan, "mean_server_ms": nan, "mean_processing_ms": nan}
    out = {
        "requests": round(n),
        "mean_queue_ms": q / n / 1e3,
        "mean_server_ms": inf / n / 1e3,
        "mean_processing_ms": (inf - q) / n / 1e3,
    }
    handled = after.get("InfkitRequests", 0.0) - before.get("InfkitRequests", 0.0)
    if handled > 0 and all(name in after for name in STAGES.values()):
        for stage, name in STAGES.items():
            out[f"mean_{stage}_ms"] = (after[name] - before.get(name, 0.0)) / handled
        out["mean_other_ms"] = out["mean_processing_ms"] - sum(out[f"mean_{s}_ms"] for s in STAGES)
        batches = after.get("InfkitBatches", 0.0) - before.get("InfkitBatches", 0.0)
        out["mean_batch_size"] = handled / batches if batches else nan
    return out
