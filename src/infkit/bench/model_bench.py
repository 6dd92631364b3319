"""In-process model benchmark: eager and every backend x batch sizes, as the seed notes' CPU/GPU/Inf1 table.

Each backend is compiled from the same network, then measured in a fresh process (model_worker): latency,
throughput, speed-up vs eager at the same batch size, memory, and top-1 accuracy on the test split when the
weights are trained (a checkpoint)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from infkit.bench.machine import machine_info
from infkit.compile import parity
from infkit.compile.registry import BACKENDS, CPU_BACKENDS, get_backend
from infkit.errors import InfkitError
from infkit.model import save_eager

#: eager first, then the CPU backends, then the rest of the registry (Neuron, where its SDK imports)
DEFAULT_BACKENDS = list(CPU_BACKENDS) + [b for b in BACKENDS if b not in CPU_BACKENDS]
#: int8 logits of a trained model are a few percent off fp32 (a random-weight model's tiny logits: tens of percent);
#: an output further from eager's than zeros would be (> 100 %) computes something else
MAX_RELATIVE_ERROR = 1.0


@dataclass
class BenchData:
    """Real images for the run: calibration (onnx_int8) and, with trained weights, the test split."""
    calibration: torch.Tensor | None = None
    test_images: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    #: compile.* options for the backends that calibrate (calibration_images, calibration_method, ...)
    int8_options: dict | None = None


def compile_all(net: torch.nn.Module, input_size: list[int], batch_sizes: list[int], out_dir: Path,
                backends: list[str], data: BenchData | None = None,
                echo: Callable[[str], None] = print) -> tuple[dict, dict]:
    """{backend: {"entries": [(batch size or None, path)], "options": used}} for those that compile here;
    {backend: reason} for the rest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = data or BenchData()
    artifacts, skipped = {}, {}
    for name in backends:
        backend = get_backend(name)
        reason = backend.unavailable_reason()
        if reason:
            skipped[name] = reason
            echo(f"  {name}: skipped ({reason.split(';')[0]})")
            continue
        sizes = batch_sizes if backend.static_batch else [None]
        calibrates = getattr(backend, "needs_calibration", False)
        if calibrates and data.calibration is None:
            raise InfkitError(f"{name} needs calibration images; none were loaded")
        options = {"batch_sizes": batch_sizes, **((data.int8_options or {}) if calibrates else {})}
        extra = {"calibration": data.calibration} if calibrates else {}
        entries, used = [], {}
        for bs in sizes:
            path = out_dir / (f"model.bs{bs}{backend.suffix}" if bs else f"model{backend.suffix}")
            t0 = time.perf_counter()
            used = backend.compile(net, _probe(data, bs or 1, input_size), options, path, **extra)
            echo(f"  {name}: compiled {path.name} in {time.perf_counter() - t0:.1f} s")
            entries.append((bs, path))
        artifacts[name] = {"entries": entries, "options": used}
        _check_same_function(name, backend, net, entries[0][1], _probe(data, sizes[0] or 2, input_size), calibrates)
    return artifacts, skipped


def _probe(data: BenchData, n: int, input_size: list[int]) -> torch.Tensor:
    """n real images when there are some (int8 ranges are set on real images), else random ones."""
    if data.calibration is not None and len(data.calibration):
        x = data.calibration[:n]
        return torch.cat([x] * (n // len(x) + 1))[:n] if len(x) < n else x
    return torch.randn(n, *input_size)


def _check_same_function(name, backend, net, path, x, changes_numerics: bool) -> None:
    """Refuse to benchmark an artifact that computes another function (exact backends to 1e-2 in logits;
    int8 to MAX_RELATIVE_ERROR: its accuracy is judged on real data by the compile stage and --ckpt)."""
    fn = backend.load(path)
    with torch.inference_mode():
        eager, out = net.eval()(x), fn(x).float()
    diff, rel = parity.compare(eager, out)["max_abs_logit_diff"], parity.relative_error(eager, out)
    if (changes_numerics and rel > MAX_RELATIVE_ERROR) or (not changes_numerics and diff > 1e-2):
        raise InfkitError(f"{name} output differs from eager by {diff:.3g} (relative {rel:.1%}); "
                          "not benchmarking a wrong model")


def measure(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "infkit.bench.model_worker", json.dumps(spec)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise InfkitError(f"measuring {spec['backend']} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(net: torch.nn.Module, model_name: str, num_classes: int, input_size: list[int], batch_sizes: list[int],
        out_dir: Path, threads: int, backends: list[str] | None = None, warmup: int = 10, iterations: int = 200,
        max_seconds: float = 10.0, data: BenchData | None = None, echo: Callable[[str], None] = print) -> dict:
    backends = [b for b in (backends or DEFAULT_BACKENDS) if b != "eager"]
    data = data or BenchData()
    echo(f"compiling {model_name} {input_size} for {', '.join(backends)} ...")
    artifacts, skipped = compile_all(net, input_size, batch_sizes, out_dir / "artifacts", backends, data, echo)
    eager_path = save_eager(net, model_name, num_classes, input_size[0], out_dir / "artifacts" / "model.eager.pt")
    accuracy_data = None
    if data.test_images is not None:
        accuracy_data = out_dir / "artifacts" / "test_split.pt"
        torch.save((data.test_images, data.test_labels), accuracy_data)
    rows, plan = [], [("eager", {"entries": [(None, eager_path)], "options": {}})] + list(artifacts.items())
    for k, (backend, art) in enumerate(plan, 1):
        echo(f"[{k}/{len(plan)}] measuring {backend} at batch sizes {batch_sizes} ...")
        size_bytes = sum(p.stat().st_size for _, p in art["entries"])
        accuracy = None
        for bs, path in art["entries"]:
            sizes = [bs] if bs else batch_sizes
            spec = {"backend": backend, "path": str(path), "input_size": input_size, "batch_sizes": sizes,
                    "threads": threads, "warmup": warmup, "iterations": iterations, "max_seconds": max_seconds,
                    "spinning": art["options"].get("allow_spinning"), "static_batch": bs is not None,
                    "accuracy_data": str(accuracy_data) if accuracy_data and accuracy is None else None}
            m = measure(spec)
            accuracy = m["accuracy"] if m["accuracy"] is not None else accuracy
            for r in m["results"]:
                rows.append({"backend": backend, "batch_size": r["batch_size"], "p50_ms": r["p50_ms"],
                             "p90_ms": r["p90_ms"], "throughput_ips": r["throughput_ips"],
                             "iterations": r["iterations"], "artifact_mib": size_bytes / 2**20,
                             "memory_added_mib": m["memory_added_mib"], "load_s": m["load_s"]})
                echo(f"    bs {r['batch_size']:>3}: p50 {r['p50_ms']:.2f} ms, p90 {r['p90_ms']:.2f} ms, "
                     f"{r['throughput_ips']:.0f} img/s")
        for row in rows:
            if row["backend"] == backend:
                row["top1_accuracy"] = accuracy
        if accuracy is not None:
            echo(f"    top-1 accuracy on {len(data.test_labels)} test images: {100 * accuracy:.2f} %")
    eager = {r["batch_size"]: r["throughput_ips"] for r in rows if r["backend"] == "eager"}
    for row in rows:
        row["speedup_vs_eager"] = row["throughput_ips"] / eager[row["batch_size"]]
    return {"model": model_name, "input_size": input_size, "num_params": sum(p.numel() for p in net.parameters()),
            "threads": threads, "batch_sizes": batch_sizes, "rows": rows, "skipped": skipped,
            "backend_options": {name: art["options"] for name, art in artifacts.items()},
            "accuracy_images": None if data.test_labels is None else len(data.test_labels),
            "calibration_images": None if data.calibration is None else len(data.calibration),
            "machine": machine_info()}


def _flag_name(key: str) -> str:
    return "--" + key.replace("_", "-") if key in ("calibration_images", "calibration_method") else f"--int8 {key}"


def int8_flags(pairs: list[str]) -> dict:
    """--int8 KEY=VALUE ... -> onnx_int8 options (checked by name here, by value in load_data)."""
    from infkit.compile.onnx_int8 import OnnxInt8Backend

    allowed = [k for k in OnnxInt8Backend.option_names if k not in ("calibration_images", "calibration_method")]
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in allowed:
            raise InfkitError(f"--int8 {pair}: give KEY=VALUE with KEY one of {', '.join(allowed)}")
        options[key] = value
    return options


def load_data(data_overrides: list[str], input_size: list[int], mean, std, num_classes: int, int8_options: dict,
              calibrate: bool, accuracy_images: int | None, out_dir: Path) -> BenchData:
    """Real images from the data config (`data_overrides`, Hydra syntax; default: the project's default data) at
    the benchmark's input size: training images to calibrate int8, test images when accuracy is asked for."""
    import hydra
    import numpy as np

    from infkit.compile import calibration
    from infkit.utils.compose import compose_config

    # bad options stop here, in one line naming the flag
    settings = calibration.settings(int8_options, _flag_name) if calibrate else None
    if not calibrate and accuracy_images is None:
        return BenchData()
    c, h, w = input_size
    cfg = compose_config("trace", [*data_overrides, f"data.input_size=[{c},{h},{w}]"], out_dir)
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare()
    dm.set_default_normalization(mean, std)
    data = BenchData(int8_options=int8_options)
    if settings is not None:
        data.calibration = calibration.images(dm.dataset(calibration.SPLIT), settings.images)
    if accuracy_images is not None:
        if dm.num_classes != num_classes:
            raise InfkitError(f"the checkpoint has {num_classes} classes, data {dm.name!r} has {dm.num_classes}; pass "
                              "--data with the experiment it was trained on, e.g. --data experiment=digits_example")
        test = dm.dataset("test")
        n = min(int(accuracy_images), len(test))
        ids = np.linspace(0, len(test) - 1, n).round().astype(int)
        items = [test[int(i)] for i in ids]
        data.test_images = torch.stack([x for x, _ in items])
        data.test_labels = torch.tensor([y for _, y in items])
    return data
