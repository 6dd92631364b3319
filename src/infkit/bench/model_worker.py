"""Measure one backend in a fresh process: memory added by loading, latency per batch size.

    python -m infkit.bench.model_worker '<json spec>'   -> prints one JSON line
Run by infkit.bench.model_bench so that each backend's memory is measured on its own."""

from __future__ import annotations

import gc
import json
import sys
import time

import numpy as np
import psutil
import torch

from infkit.utils.timing import latencies


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def main(spec: dict) -> dict:
    torch.set_num_threads(int(spec["threads"]))
    c, h, w = spec["input_size"]
    # import the libraries first: what is measured is the model, not the import of its runtime
    from infkit.compile.registry import get_backend
    from infkit.model import load_eager

    backend = None if spec["backend"] == "eager" else get_backend(spec["backend"])
    if backend is not None:
        backend.unavailable_reason()
    baseline = rss_mb()
    t0 = time.perf_counter()
    if backend is None:
        net = load_eager(spec["path"])

        def fn(x):
            with torch.inference_mode():
                return net(x)
    else:
        # data_parallel (Neuron backends only): the SDK's DataParallel over every NeuronCore this process sees
        extra = {"data_parallel": True} if spec.get("data_parallel") else {}
        if spec.get("spinning") is not None:
            extra["spinning"] = bool(spec["spinning"])
        fn = backend.load(spec["path"], threads=int(spec["threads"]), **extra)
    fn(torch.randn(1, c, h, w))
    load_s = time.perf_counter() - t0
    loaded = rss_mb()
    results = []
    for bs in spec["batch_sizes"]:
        x = torch.randn(bs, c, h, w)
        arr = latencies(
            lambda x=x: fn(x),
            warmup=int(spec["warmup"]),
            repeats=int(spec["iterations"]),
            max_seconds=float(spec["max_seconds"]),
            min_repeats=5,
        )
        results.append(
            {
                "batch_size": bs,
                "iterations": len(arr),
                "p50_ms": float(np.percentile(arr, 50) * 1e3),
                "p90_ms": float(np.percentile(arr, 90) * 1e3),
                "mean_ms": float(arr.mean() * 1e3),
                "throughput_ips": float(bs / arr.mean()),
            }
        )
    return {
        "backend": spec["backend"],
        "load_s": load_s,
        "memory_added_mib": loaded - baseline,
        "rss_mib": loaded,
        "results": results,
        "accuracy": accuracy(fn, spec),
    }


def accuracy(fn, spec: dict) -> float | None:
    """Top-1 accuracy on the saved test images (spec["accuracy_data"]), run at the batch sizes measured."""
    if not spec.get("accuracy_data"):
        return None
    from infkit.compile.batching import run_bucketed

    images, labels = torch.load(spec["accuracy_data"], weights_only=True)
    sizes = spec["batch_sizes"]
    runners = {sizes[0]: fn} if spec.get("static_batch") else {None: fn}
    chunk = max(sizes) if not spec.get("static_batch") else sizes[0]
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(images), chunk):
            x = images[start : start + chunk]
            correct += int((run_bucketed(runners, x).argmax(1) == labels[start : start + chunk]).sum())
    return correct / max(1, len(images))


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
