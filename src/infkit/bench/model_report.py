"""The in-process benchmark's files: model_bench.json (everything), .md (the table) and .png (the bar chart)."""

from __future__ import annotations

import json
from pathlib import Path


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def _ips(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _usd(value) -> str:
    return "—" if value is None else f"{value:.4f}"


def markdown(result: dict) -> str:
    price = result.get("pricing")
    head = (
        "| backend | batch | p50 ms | p90 ms | throughput img/s | × eager | top-1 % | artifact MiB | "
        "memory added MiB |" + (" $ per M inferences |" if price else "") + "\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if price else "") + "\n"
    )
    body = "".join(
        f"| {r['backend']} | {r['batch_size']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
        f"{_ips(r['throughput_ips'])} | {r['speedup_vs_eager']:.2f} | {_pct(r.get('top1_accuracy'))} | "
        f"{r['artifact_mib']:.1f} | {r['memory_added_mib']:.0f} |"
        + (f" {_usd(r.get('cost_per_million_usd'))} |" if price else "")
        + "\n"
        for r in result["rows"]
    )
    m = result["machine"]
    foot = (
        f"\n{result['model']} {result['input_size']}, {result['num_params'] / 1e6:.2f} M parameters; "
        f"{m['cpu_model']} ({m.get('int8_instructions', 'unknown')}), {m['usable_cores']} cores, "
        f"{result['threads']} intra-op threads; torch {m['versions'].get('torch')}, "
        f"onnxruntime {m['versions'].get('onnxruntime')}.\n"
    )
    if result.get("accuracy_images"):
        foot += f"top-1 % on {result['accuracy_images']} test-split images.\n"
    else:
        foot += "top-1 % not measured (random weights: pass --ckpt for accuracy).\n"
    if result.get("calibration_images") and "onnx_int8" in result.get("backend_options", {}):
        int8 = result["backend_options"]["onnx_int8"]
        foot += (
            f"onnx_int8: {int8.get('calibration_method', '?')} calibration on {result['calibration_images']} "
            f"training images, {int8.get('activation_type', '?')} activations, {int8.get('weight_type', '?')} "
            f"weights, per-channel {int8.get('per_channel', '?')}.\n"
        )
    spinning = {b: o["allow_spinning"] for b, o in result.get("backend_options", {}).items() if "allow_spinning" in o}
    if spinning:
        foot += (
            "ONNX Runtime thread spinning (measured at compile): "
            + ", ".join(f"{b} {'on' if v else 'off'}" for b, v in spinning.items())
            + ".\n"
        )
    if result["skipped"]:
        foot += f"Not measured here: {', '.join(result['skipped'])} (not available on this machine).\n"
    checked = result.get("same_function") or {}
    if checked:
        foot += (
            "Same function as eager (infkit.bench.same_function): "
            + ", ".join(
                f"{b} max |Δlogit| {c['max_abs_logit_diff']:.2g}, top-1 agreement {c['top1_agreement']:.0%} on "
                f"{c['images']} images"
                for b, c in checked.items()
            )
            + ".\n"
        )
    for b, c in (result.get("failed") or {}).items():
        foot += f"FAILED, not measured: {b} is not the eager model's function: {c['reason']}.\n"
    if price:
        foot += (
            f"$ per M inferences = price per hour / (3600 x img/s) x 10^6 at {price['instance'] or 'the given price'}"
            f" ${price['per_hour']:g}/hour ({price['source']}).\n"
        )
    run_load = (result.get("machine_load") or {}).get("run") or {}
    if run_load.get("before"):
        b = run_load["before"]
        foot += (
            f"Machine before the run: load average {b['load_avg_1m']:.2f} on {b['usable_cores']} usable cores, "
            f"other processes {b['other_processes_cpu_cores']:.2f} cores.\n"
        )
    for line in result.get("warnings") or []:
        foot += f"{line}\n"
    return head + body + foot


def write(result: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "model_bench.json", "md": out_dir / "model_bench.md", "png": out_dir / "model_bench.png"}
    paths["json"].write_text(json.dumps(result, indent=2) + "\n")
    paths["md"].write_text(markdown(result))
    plot(result, paths["png"])
    return paths


def plot(result: dict, path: Path) -> None:
    """Throughput, speed-up vs eager and p50 latency, one bar per backend and batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    backends = list(dict.fromkeys(r["backend"] for r in result["rows"]))
    accuracy = {r["backend"]: r.get("top1_accuracy") for r in result["rows"]}
    names = [b if accuracy.get(b) is None else f"{b}\n{100 * accuracy[b]:.1f} %" for b in backends]
    sizes = result["batch_sizes"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    width = 0.8 / max(1, len(sizes))
    panels = (
        ("throughput_ips", "throughput (img/s, higher is better)"),
        ("speedup_vs_eager", "speed-up vs eager at the same batch (×)"),
        ("p50_ms", "p50 latency per batch (ms, lower is better)"),
    )
    for j, bs in enumerate(sizes):
        by = {r["backend"]: r for r in result["rows"] if r["batch_size"] == bs}
        xs = np.arange(len(backends)) + j * width
        for ax, (key, _) in zip(axes, panels):
            bars = ax.bar(xs, [by[b][key] if b in by else 0 for b in backends], width, label=f"batch {bs}")
            if key == "speedup_vs_eager":
                ax.bar_label(bars, fmt="%.1f×", fontsize=7)
    axes[1].axhline(1.0, color="grey", linewidth=0.8)
    for ax, (_, title) in zip(axes, panels):
        ax.set_xticks(np.arange(len(backends)) + width * (len(sizes) - 1) / 2, names, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    m = result["machine"]
    extra = " (labels: top-1 on the test split)" if any(v is not None for v in accuracy.values()) else ""
    fig.suptitle(
        f"{result['model']} {result['input_size']} on {m['cpu_model']} ({m['usable_cores']} cores){extra}", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
