"""`make demo`: the pipeline end to end on the embedded digits data, with a summary table."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from infkit.compile import run as compile_stage
from infkit.compile.registry import get_backend
from infkit.train import run as train_stage
from infkit.utils.compose import compose_config
from infkit.utils.timing import latencies

log = logging.getLogger("infkit.demo")

BACKENDS = ("torchscript", "onnx")


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def single_image_latency_ms(backend_name: str, artifact: Path, example: torch.Tensor) -> tuple[float, float]:
    fn = get_backend(backend_name).load(artifact)
    t = latencies(lambda: fn(example), warmup=5, repeats=50)
    return float(np.percentile(t, 50) * 1e3), float(np.percentile(t, 90) * 1e3)


def run(root: Path = Path("logs/demo")) -> dict:
    out = root / time.strftime("%Y-%m-%d_%H-%M-%S")
    experiment = "experiment=digits_example"
    print(f"[1/2] training resnet18 on digits (python src/train.py {experiment}) ...", flush=True)
    trained = train_stage.run(compose_config("train", [experiment], out / "train"))
    print(f"      test/acc {trained.metrics.get('test/acc', float('nan')):.4f}; best checkpoint {trained.best_ckpt}")

    rows, results = [], {}
    for i, backend in enumerate(BACKENDS, 1):
        print(f"[2/2] compiling with {backend} ({i}/{len(BACKENDS)}): python src/trace_inferentia.py {experiment} "
              f"ckpt_path={trained.best_ckpt} compile={backend}", flush=True)
        cfg = compose_config("trace", [experiment, f"ckpt_path={trained.best_ckpt}", f"compile={backend}"],
                             out / f"compile-{backend}")
        result = compile_stage.run(cfg)
        results[backend] = result
        c, h, w = result.manifest["input_size"]
        p50, p90 = single_image_latency_ms(backend, result.artifacts[0], torch.randn(1, c, h, w))
        par = result.manifest["parity"]
        rows.append([backend, str(result.artifacts[0]), f"{result.artifacts[0].stat().st_size / 1e6:.1f} MB",
                     f"{100 * par['top1_agreement']:.1f} % top-1, max|Δ| {par['max_abs_logit_diff']:.1e}",
                     f"{p50:.2f} / {p90:.2f}"])
    print()
    print(_table(rows, ["backend", "artifact", "size", "parity vs eager", "1-image latency p50/p90 ms"]))
    print(f"\ntest metrics: {trained.metrics_path}")
    for backend, result in results.items():
        print(f"{backend} manifest: {result.manifest_path}")
    return {"train": trained, "compile": results, "out": out}
