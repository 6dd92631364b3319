"""In-process model benchmark: eager and every backend x batch sizes, as the original project's CPU/GPU/Inf1 table.

Each backend is compiled from the same network and checked to compute the same function on real images
(infkit.bench.same_function: a backend outside its documented bound is reported failed and never measured), then
measured in a fresh process (model_worker): latency, throughput, speed-up vs eager at the same batch size, memory,
and top-1 accuracy on the test split when the weights are trained (a checkpoint). The machine's load is recorded
before and after each backend's measurement."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from infkit.bench import busy, same_function
from infkit.bench.machine import machine_info
from infkit.bench.model_data import BenchData
from infkit.compile.batching import run_bucketed
from infkit.compile.registry import BACKENDS, CPU_BACKENDS, get_backend
from infkit.errors import InfkitError
from infkit.model import save_eager

#: eager first, then the CPU backends, then the rest of the registry (Neuron, where its SDK imports)
DEFAULT_BACKENDS = list(CPU_BACKENDS) + [b for b in BACKENDS if b not in CPU_BACKENDS]
#: int8 logits of a trained model are a few percent off fp32 (a random-weight model's tiny logits: tens of percent);
#: an output further from eager's than zeros would be (> 100 %) computes something else
MAX_RELATIVE_ERROR = 1.0


def compile_all(
    net: torch.nn.Module,
    input_size: list[int],
    batch_sizes: list[int],
    out_dir: Path,
    backends: list[str],
    data: BenchData | None = None,
    echo: Callable[[str], None] = print,
    data_parallel: bool = False,
) -> tuple[dict, dict, dict]:
    """{backend: {"entries": [(batch size or None, path)], "options": used, "same_function": figures}} for those
    that compile here and compute the eager model's function; {backend: reason} for those unavailable here; and
    {backend: figures with the reason} for those that compute something else (not to be measured)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = data or BenchData()
    artifacts, skipped, failed = {}, {}, {}
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
        if data_parallel and name == "neuron":
            options["pipeline_cores"] = None  # DataParallel replicates whole models: no pipelining
        extra = {"calibration": data.calibration} if calibrates else {}
        entries, used = [], {}
        for bs in sizes:
            path = out_dir / (f"model.bs{bs}{backend.suffix}" if bs else f"model{backend.suffix}")
            t0 = time.perf_counter()
            used = backend.compile(net, _probe(data, bs or 1, input_size), options, path, **extra)
            echo(f"  {name}: compiled {path.name} in {time.perf_counter() - t0:.1f} s")
            entries.append((bs, path))
        check = _same_function(name, backend, net, entries, _probe(data, same_function.PROBE_IMAGES, input_size))
        if check["passed"]:
            artifacts[name] = {"entries": entries, "options": used, "same_function": check}
        else:
            failed[name] = check
            echo(f"  {name}: FAILED the same-function check, not measured: {check['reason']}")
    return artifacts, skipped, failed


def _probe(data: BenchData, n: int, input_size: list[int]) -> torch.Tensor:
    """Up to n real images when there are some (int8 ranges are set on real images), else n random ones."""
    if data.calibration is not None and len(data.calibration):
        return data.calibration[:n]
    return torch.randn(n, *input_size, generator=torch.Generator().manual_seed(0))


def _same_function(name, backend, net, entries, x) -> dict:
    """The artifact against eager on the probe images, each compiled batch size run as a server would run it."""
    runners = {bs: backend.load(path) for bs, path in entries}
    with torch.inference_mode():
        eager, out = net.eval()(x), run_bucketed(runners, x)
    return same_function.check(name, eager, out)


NEURON, DP = ("neuron", "neuronx"), "+dp"


def check_data_parallel(backends: list[str]) -> None:
    """--data-parallel measures the Neuron SDKs' DataParallel: at least one of them must import here."""
    usable = [b for b in backends if b in NEURON and get_backend(b).unavailable_reason() is None]
    if not usable:
        raise InfkitError(
            "--data-parallel measures torch.neuron / torch_neuronx DataParallel, but neither "
            f"{' nor '.join(NEURON)} imports here (or is selected with --backends); run it on "
            "Inf1/Inf2 in the Neuron environment (docs/inferentia.md)"
        )


def measure(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "infkit.bench.model_worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InfkitError(f"measuring {spec['backend']} failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(
    net: torch.nn.Module,
    model_name: str,
    num_classes: int,
    input_size: list[int],
    batch_sizes: list[int],
    out_dir: Path,
    threads: int,
    backends: list[str] | None = None,
    warmup: int = 10,
    iterations: int = 200,
    max_seconds: float = 10.0,
    data: BenchData | None = None,
    echo: Callable[[str], None] = print,
    data_parallel: bool = False,
) -> dict:
    backends = [b for b in (backends or DEFAULT_BACKENDS) if b != "eager"]
    data = data or BenchData()
    if data_parallel:
        check_data_parallel(backends)
    echo(f"compiling {model_name} {input_size} for {', '.join(backends)} ...")
    machine_before = busy.snapshot()
    artifacts, skipped, failed = compile_all(
        net, input_size, batch_sizes, out_dir / "artifacts", backends, data, echo, data_parallel
    )
    eager_path = save_eager(net, model_name, num_classes, input_size[0], out_dir / "artifacts" / "model.eager.pt")
    accuracy_data = None
    if data.test_images is not None:
        accuracy_data = out_dir / "artifacts" / "test_split.pt"
        torch.save((data.test_images, data.test_labels), accuracy_data)
    rows, plan = [], [("eager", {"entries": [(None, eager_path)], "options": {}}), *list(artifacts.items())]
    machine_load: dict[str, dict] = {}
    if data_parallel:  # one more row per Neuron backend: its smallest artifact in DataParallel over all cores
        plan += [
            (f"{b}{DP}", {"entries": [(None, a["entries"][0][1])], "options": a["options"]})
            for b, a in artifacts.items()
            if b in NEURON
        ]
    for k, (label, art) in enumerate(plan, 1):
        backend = label.removesuffix(DP)
        echo(f"[{k}/{len(plan)}] measuring {label} at batch sizes {batch_sizes} ...")
        size_bytes = sum(p.stat().st_size for _, p in art["entries"])
        accuracy = None
        load_before = busy.snapshot()
        for bs, path in art["entries"]:
            sizes = [bs] if bs else batch_sizes
            spec = {
                "backend": backend,
                "path": str(path),
                "input_size": input_size,
                "batch_sizes": sizes,
                "threads": threads,
                "warmup": warmup,
                "iterations": iterations,
                "max_seconds": max_seconds,
                "spinning": art["options"].get("allow_spinning"),
                "static_batch": bs is not None,
                "accuracy_data": str(accuracy_data) if accuracy_data and accuracy is None else None,
                "data_parallel": label.endswith(DP),
            }
            m = measure(spec)
            accuracy = m["accuracy"] if m["accuracy"] is not None else accuracy
            for r in m["results"]:
                rows.append(
                    {
                        "backend": label,
                        "batch_size": r["batch_size"],
                        "p50_ms": r["p50_ms"],
                        "p90_ms": r["p90_ms"],
                        "throughput_ips": r["throughput_ips"],
                        "iterations": r["iterations"],
                        "artifact_mib": size_bytes / 2**20,
                        "memory_added_mib": m["memory_added_mib"],
                        "load_s": m["load_s"],
                    }
                )
                echo(
                    f"    bs {r['batch_size']:>3}: p50 {r['p50_ms']:.2f} ms, p90 {r['p90_ms']:.2f} ms, "
                    f"{r['throughput_ips']:.0f} img/s"
                )
        machine_load[label] = busy.around(load_before, busy.snapshot())
        for row in rows:
            if row["backend"] == label:
                row["top1_accuracy"] = accuracy
        if accuracy is not None:
            echo(f"    top-1 accuracy on {len(data.test_labels)} test images: {100 * accuracy:.2f} %")
    eager = {r["batch_size"]: r["throughput_ips"] for r in rows if r["backend"] == "eager"}
    for row in rows:
        row["speedup_vs_eager"] = row["throughput_ips"] / eager[row["batch_size"]]
    return {
        "model": model_name,
        "input_size": input_size,
        "num_params": sum(p.numel() for p in net.parameters()),
        "threads": threads,
        "batch_sizes": batch_sizes,
        "rows": rows,
        "skipped": skipped,
        "failed": failed,
        "same_function": {name: art["same_function"] for name, art in artifacts.items()},
        "backend_options": {name: art["options"] for name, art in artifacts.items()},
        "accuracy_images": None if data.test_labels is None else len(data.test_labels),
        "calibration_images": None if data.calibration is None else len(data.calibration),
        "machine": machine_info(),
        "machine_load": {"run": busy.around(machine_before, busy.snapshot()), "by_backend": machine_load},
    }
