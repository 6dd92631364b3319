"""Benchmark results to files: JSON (everything), CSV (levels, requests), PNG (curves; neuron.png beside
neuron-monitor)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

LEVEL_COLUMNS = [
    "mode",
    "level",
    "requests",
    "ok",
    "errors",
    "error_rate",
    "failed",
    "first_error",
    "throughput_rps",
    "responses_rps",
    "cost_per_million_usd",
    "mean_s",
    "p50_s",
    "p90_s",
    "p99_s",
    "max_s",
    "late_requests",
    "server_requests",
    "server_queue_ms",
    "server_processing_ms",
    "server_preprocess_ms",
    "server_inference_ms",
    "server_postprocess_ms",
    "server_other_ms",
    "server_total_ms",
    "client_rest_ms",
    "server_batch_size",
    "client_processes",
    "client_cores_used",
    "client_cpu_util",
    "client_cpu_ms_per_request",
    "client_bottleneck",
    "load_avg_1m_before",
    "other_cpu_cores_before",
    "stopped_by",
]


def level_row(result: dict) -> dict:
    s, srv, cli = result["summary"], result.get("server") or {}, result.get("client") or {}
    before = (result.get("machine_load") or {}).get("before") or {}
    lat = s["latency_s"]
    return {
        "mode": result["mode"],
        "level": result["level"],
        "requests": s["requests"],
        "ok": s["ok"],
        "errors": s["errors"],
        "error_rate": _round(s["error_rate"]),
        "failed": result.get("failed") or "",
        "first_error": result.get("first_error") or "",
        "throughput_rps": round(s["throughput_rps"], 3),
        "responses_rps": round(s["responses_rps"], 3),
        "cost_per_million_usd": _round(result.get("cost_per_million_usd"), 6),
        "mean_s": lat["mean"],
        "p50_s": lat["p50"],
        "p90_s": lat["p90"],
        "p99_s": lat["p99"],
        "max_s": lat["max"],
        "late_requests": s["client_lag"]["late_requests"],
        "server_requests": srv.get("requests"),
        "server_queue_ms": srv.get("mean_queue_ms"),
        "server_processing_ms": srv.get("mean_processing_ms"),
        "server_preprocess_ms": srv.get("mean_preprocess_ms"),
        "server_inference_ms": srv.get("mean_inference_ms"),
        "server_postprocess_ms": srv.get("mean_postprocess_ms"),
        "server_other_ms": srv.get("mean_other_ms"),
        "server_total_ms": srv.get("mean_server_ms"),
        "client_rest_ms": srv.get("mean_client_rest_ms"),
        "server_batch_size": srv.get("mean_batch_size"),
        "client_processes": cli.get("processes"),
        "client_cores_used": _round(cli.get("cores_used")),
        "client_cpu_util": _round(cli.get("cpu_util")),
        "client_cpu_ms_per_request": _round(cli.get("cpu_ms_per_request")),
        "client_bottleneck": cli.get("bottleneck"),
        "load_avg_1m_before": before.get("load_avg_1m"),
        "other_cpu_cores_before": before.get("other_processes_cpu_cores"),
        "stopped_by": result["stopped_by"],
    }


def _round(value, digits: int = 4):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(value, digits)


def json_safe(obj):
    """obj with NaN and infinities as None (JSON has neither), through dicts, lists and tuples."""
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_load(
    out_dir: Path, config: dict, machine: dict, results: list[dict], extra: dict | None = None
) -> dict[str, Path]:
    """The run's files; `extra` (pricing, the run's machine load, warnings, the outcome) goes into results.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "results.json",
        "levels_csv": out_dir / "levels.csv",
        "requests_csv": out_dir / "requests.csv",
        "png": out_dir / "latency_throughput.png",
    }
    doc = {
        "config": config,
        "machine": machine,
        **(extra or {}),
        "levels": [{k: v for k, v in r.items() if k != "records"} for r in results],
    }
    paths["json"].write_text(json.dumps(json_safe(doc), indent=2) + "\n")
    neuron = any(r.get("neuron") for r in results)  # run beside neuron-monitor (--neuron-monitor)
    if neuron:
        from infkit.monitor.summary import NEURON_COLUMNS, neuron_row, plot_levels
    with open(paths["levels_csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LEVEL_COLUMNS + (NEURON_COLUMNS if neuron else []))
        w.writeheader()
        for r in results:
            w.writerow(level_row(r) | (neuron_row(r) if neuron else {}))
    with open(paths["requests_csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["level", "intended", "start", "end", "latency", "status", "warmup"])
        for r in results:
            for rec in r["records"]:
                w.writerow(
                    [
                        r["level"],
                        f"{rec.intended:.6f}",
                        f"{rec.start:.6f}",
                        f"{rec.end:.6f}",
                        f"{rec.latency:.6f}",
                        rec.status,
                        int(rec.warmup),
                    ]
                )
    plot_curve(results, paths["png"], machine)
    if neuron:
        paths["neuron_png"] = out_dir / "neuron.png"
        plot_levels(results, paths["neuron_png"], machine)
    return paths


def plot_curve(results: list[dict], path: Path, machine: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [level_row(r) for r in results if r["summary"]["ok"]]  # successful work only
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if rows:
        x = [r["throughput_rps"] for r in rows]
        for key, style in (("p50_s", "o-"), ("p90_s", "s--"), ("p99_s", "^:")):
            ax.plot(x, [r[key] * 1e3 for r in rows], style, label=key[:3])
        unit = "clients" if rows[0]["mode"] == "closed" else "req/s offered"
        for r in rows:
            ax.annotate(
                f"{r['level']:g}",
                (r["throughput_rps"], r["p50_s"] * 1e3),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
        ax.set_title(f"latency vs throughput (labels: {unit})", fontsize=10)
        ax.legend()
    else:
        ax.set_title("no successful requests: nothing to plot", fontsize=10)
    ax.set_xlabel("throughput (successful requests/s)")
    ax.set_ylabel("latency of successful requests (ms)")
    ax.grid(alpha=0.3)
    fig.text(0.01, 0.01, f"{machine.get('cpu_model', '')}, {machine.get('usable_cores')} cores", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
