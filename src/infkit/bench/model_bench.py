"""In-process model benchmark: every available backend x batch sizes, as the seed notes' CPU/GPU/Inf1 table.

Each backend is compiled from the same network, then measured in a fresh process (model_worker)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from infkit.compile import parity
from infkit.compile.registry import BACKENDS, get_backend
from infkit.bench.machine import machine_info
from infkit.errors import InfkitError
from infkit.model import save_eager


def compile_all(net: torch.nn.Module, input_size: list[int], batch_sizes: list[int], out_dir: Path,
                backends: list[str], echo: Callable[[str], None] = print,
                data_parallel: bool = False) -> tuple[dict, dict]:
    """{backend: [(batch size or None, path)]} for those that compile here; {backend: reason} for the rest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    c, h, w = input_size
    artifacts, skipped = {}, {}
    for name in backends:
        backend = get_backend(name)
        reason = backend.unavailable_reason()
        if reason:
            skipped[name] = reason
            echo(f"  {name}: skipped (its SDK does not import here)")
            continue
        sizes = batch_sizes if backend.static_batch else [None]
        artifacts[name] = []
        for bs in sizes:
            path = out_dir / (f"model.bs{bs}{backend.suffix}" if bs else f"model{backend.suffix}")
            t0 = time.perf_counter()
            options = {"batch_sizes": batch_sizes}
            if data_parallel and name == "neuron":
                options["pipeline_cores"] = None  # DataParallel replicates whole models: no pipelining
            backend.compile(net, torch.randn(bs or 1, c, h, w), options, path)
            echo(f"  {name}: compiled {path.name} in {time.perf_counter() - t0:.1f} s")
            artifacts[name].append((bs, path))
        # a quick check that the compiled model computes the same function
        fn = backend.load(artifacts[name][0][1])
        x = torch.randn(sizes[0] or 2, c, h, w)
        with torch.inference_mode():
            diff = parity.compare(net.eval()(x), fn(x).float())["max_abs_logit_diff"]
        if diff > 1e-2:
            raise InfkitError(f"{name} output differs from eager by {diff:.3g}; not benchmarking a wrong model")
    return artifacts, skipped


NEURON, DP = ("neuron", "neuronx"), "+dp"


def check_data_parallel(backends: list[str]) -> None:
    """--data-parallel measures the Neuron SDKs' DataParallel: at least one of them must import here."""
    usable = [b for b in backends if b in NEURON and get_backend(b).unavailable_reason() is None]
    if not usable:
        raise InfkitError("--data-parallel measures torch.neuron / torch_neuronx DataParallel, but neither "
                          f"{' nor '.join(NEURON)} imports here (or is selected with --backends); run it on "
                          "Inf1/Inf2 in the Neuron environment (docs/inferentia.md)")


def measure(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "infkit.bench.model_worker", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise InfkitError(f"measuring {spec['backend']} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(net: torch.nn.Module, model_name: str, num_classes: int, input_size: list[int], batch_sizes: list[int],
        out_dir: Path, threads: int, backends: list[str] | None = None, warmup: int = 10, iterations: int = 200,
        max_seconds: float = 10.0, echo: Callable[[str], None] = print, data_parallel: bool = False) -> dict:
    backends = backends or list(BACKENDS)
    if data_parallel:
        check_data_parallel(backends)
    echo(f"compiling {model_name} {input_size} for {', '.join(backends)} ...")
    artifacts, skipped = compile_all(net, input_size, batch_sizes, out_dir / "artifacts", backends, echo,
                                     data_parallel)
    eager_path = save_eager(net, model_name, num_classes, input_size[0], out_dir / "artifacts" / "model.eager.pt")
    rows = []
    plan = [("eager", [(None, eager_path)])] + list(artifacts.items())
    if data_parallel:  # one more row per Neuron backend: its smallest artifact in DataParallel over all cores
        plan += [(f"{b}{DP}", [(None, e[0][1])]) for b, e in artifacts.items() if b in NEURON]
    for k, (label, entries) in enumerate(plan, 1):
        backend = label.removesuffix(DP)
        echo(f"[{k}/{len(plan)}] measuring {label} at batch sizes {batch_sizes} ...")
        size_bytes = sum(p.stat().st_size for _, p in entries)
        for bs, path in entries:
            sizes = [bs] if bs else batch_sizes
            spec = {"backend": backend, "path": str(path), "input_size": input_size, "batch_sizes": sizes,
                    "threads": threads, "warmup": warmup, "iterations": iterations, "max_seconds": max_seconds,
                    "data_parallel": label.endswith(DP)}
            m = measure(spec)
            for r in m["results"]:
                rows.append({"backend": label, "batch_size": r["batch_size"], "p50_ms": r["p50_ms"],
                             "p90_ms": r["p90_ms"], "throughput_ips": r["throughput_ips"],
                             "iterations": r["iterations"], "artifact_mib": size_bytes / 2**20,
                             "memory_added_mib": m["memory_added_mib"], "load_s": m["load_s"]})
                echo(f"    bs {r['batch_size']:>3}: p50 {r['p50_ms']:.2f} ms, p90 {r['p90_ms']:.2f} ms, "
                     f"{r['throughput_ips']:.0f} img/s")
    return {"model": model_name, "input_size": input_size, "num_params": sum(p.numel() for p in net.parameters()),
            "threads": threads, "batch_sizes": batch_sizes, "rows": rows, "skipped": skipped,
            "machine": machine_info()}


def markdown(result: dict) -> str:
    head = ("| backend | batch | p50 ms | p90 ms | throughput img/s | artifact MiB | memory added MiB |\n"
            "|---|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(f"| {r['backend']} | {r['batch_size']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
                   f"{r['throughput_ips']:.0f} | {r['artifact_mib']:.1f} | {r['memory_added_mib']:.0f} |\n"
                   for r in result["rows"])
    m = result["machine"]
    foot = (f"\n{result['model']} {result['input_size']}, {result['num_params'] / 1e6:.2f} M parameters; "
            f"{m['cpu_model']}, {m['usable_cores']} cores, {result['threads']} intra-op threads; "
            f"torch {m['versions'].get('torch')}, onnxruntime {m['versions'].get('onnxruntime')}.\n")
    if result["skipped"]:
        foot += f"Not measured here: {', '.join(result['skipped'])} (their SDK does not import on this machine).\n"
    return head + body + foot


def write(result: dict, out_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "model_bench.json", "md": out_dir / "model_bench.md", "png": out_dir / "model_bench.png"}
    paths["json"].write_text(json.dumps(result, indent=2) + "\n")
    paths["md"].write_text(markdown(result))
    backends = list(dict.fromkeys(r["backend"] for r in result["rows"]))
    sizes = result["batch_sizes"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / max(1, len(sizes))
    for j, bs in enumerate(sizes):
        by = {r["backend"]: r for r in result["rows"] if r["batch_size"] == bs}
        xs = np.arange(len(backends)) + j * width
        axes[0].bar(xs, [by[b]["throughput_ips"] if b in by else 0 for b in backends], width, label=f"batch {bs}")
        axes[1].bar(xs, [by[b]["p50_ms"] if b in by else 0 for b in backends], width, label=f"batch {bs}")
    for ax, title in zip(axes, ("throughput (img/s, higher is better)", "p50 latency per batch (ms, lower is better)")):
        ax.set_xticks(np.arange(len(backends)) + width * (len(sizes) - 1) / 2, backends)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    m = result["machine"]
    fig.suptitle(f"{result['model']} {result['input_size']} on {m['cpu_model']} ({m['usable_cores']} cores)", fontsize=10)
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=110)
    plt.close(fig)
    return paths
