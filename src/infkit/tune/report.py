"""A tune run to files: ranked table (markdown, CSV), everything (JSON, with the machine), the throughput-vs-latency
scatter with the Pareto front and the budget line (PNG)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

from infkit.bench.report import json_safe
from infkit.tune.search import Budget, best_level, pareto, rank

COLUMNS = [
    "rank",
    "artifact",
    "workers",
    "threads",
    "batch_size",
    "max_batch_delay",
    "spinning",
    "status",
    "meets_budget",
    "level",
    "throughput_rps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "errors",
    "note",
]


def row(k: int, result: dict, budget: Budget, names: Sequence[str]) -> dict:
    """One ranked line: the candidate and its best level within the budget (or, failing that, its lowest-latency
    level)."""
    c = result["candidate"]
    best = best_level(result, budget)
    levels = [lv for lv in result.get("levels", []) if lv.get("requests")]
    shown = best or min(levels, key=lambda lv: lv[f"{budget.percentile}_ms"], default=None)
    out = {
        "rank": k,
        "artifact": names[c.artifact],
        "workers": c.workers,
        "threads": c.threads or "auto",
        "batch_size": c.batch_size,
        "max_batch_delay": c.max_batch_delay,
        "spinning": "auto" if c.spinning is None else ("on" if c.spinning else "off"),
        "status": result["status"],
        "meets_budget": best is not None,
        "note": result.get("reason", ""),
    }
    if shown:
        out |= {key: _num(shown[key]) for key in ("level", "throughput_rps", "p50_ms", "p90_ms", "p99_ms", "errors")}
    return out


def _num(value):
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 2)
    return value


def markdown(rows: list[dict], budget: Budget, unit: str) -> str:
    head = (
        "| rank | artifact | workers | threads | batch | delay ms | spin | meets budget | "
        f"at {unit} | req/s | p50 ms | p90 ms | p99 ms | errors | status |"
    )
    lines = [f"Candidates ranked by throughput within {budget.describe()} (no errors).", "", head]
    lines.append("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        cells = [
            r["rank"],
            r["artifact"],
            r["workers"],
            r["threads"],
            r["batch_size"],
            r["max_batch_delay"],
            r["spinning"],
            "yes" if r["meets_budget"] else "no",
            *(r.get(k, "") if r.get(k) is not None else "" for k in COLUMNS[9:15]),
            r["status"] + (f": {r['note']}" if r["note"] else ""),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write(
    out_dir: Path,
    config: dict,
    machine: dict,
    results: list[dict],
    budget: Budget,
    names: Sequence[str],
    unit: str,
    interrupted: bool,
) -> tuple[dict[str, Path], list[dict]]:
    """Write the table, CSV, JSON and PNG; return the paths and the ranked results."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ranked = rank(results, budget)
    rows = [row(k, r, budget, names) for k, r in enumerate(ranked, 1)]
    paths = {
        "markdown": out_dir / "ranking.md",
        "csv": out_dir / "ranking.csv",
        "json": out_dir / "results.json",
        "png": out_dir / "pareto.png",
    }
    paths["markdown"].write_text(markdown(rows, budget, unit))
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in COLUMNS})
    doc = {
        "config": config,
        "machine": machine,
        "budget": {"percentile": budget.percentile, "ms": budget.ms},
        "interrupted": interrupted,
        "ranking": rows,
        "candidates": [{**r, "candidate": r["candidate"].as_dict()} for r in ranked],
    }
    paths["json"].write_text(json.dumps(json_safe(doc), indent=2, default=str) + "\n")
    plot(results, budget, names, paths["png"], machine)
    return paths, ranked


def plot(results: list[dict], budget: Budget, names: Sequence[str], path: Path, machine: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = f"{budget.percentile}_ms"
    points, labels = [], []
    for r in results:
        for lv in r.get("levels", []):
            if lv.get("requests") and not math.isnan(lv[key]):
                points.append((lv["throughput_rps"], lv[key]))
                labels.append(r["candidate"].label(names if len(set(names)) > 1 else ()))
    fig, ax = plt.subplots(figsize=(8, 5))
    if points:
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=18, alpha=0.7, label="candidate x level")
        front = pareto(points)
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "r-o", ms=5, label="Pareto front")
        for i in front:
            ax.annotate(labels[i], points[i], textcoords="offset points", xytext=(4, 4), fontsize=6)
    ax.axhline(budget.ms, color="gray", ls="--", label=f"budget {budget.describe()}")
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel(f"{budget.percentile} latency (ms)")
    ax.set_title("infkit tune: throughput vs latency", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, f"{machine.get('cpu_model', '')}, {machine.get('usable_cores')} cores", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
