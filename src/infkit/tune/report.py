"""A tune run to files: ranked table (markdown, CSV), everything (JSON, with the machine and its load), the
throughput-vs-latency scatter with the Pareto front and the budget line (PNG). Throughput is successful answers."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

from infkit.bench.report import json_safe
from infkit.tune import reference
from infkit.tune.objective import Budget, Objective, as_objective
from infkit.tune.search import pareto, rank

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
    "error_rate",
    "cost_per_million_usd",
    "note",
]
SHOWN = ("level", "throughput_rps", "p50_ms", "p90_ms", "p99_ms", "errors", "error_rate")


def row(k: int, result: dict, objective: Objective | Budget, names: Sequence[str]) -> dict:
    """One ranked line: the candidate and its level that counts for the objective (or, failing that, its
    lowest-latency level)."""
    objective = as_objective(objective)
    c = result["candidate"]
    best = objective.best_level(result)
    levels = [lv for lv in result.get("levels", []) if lv.get("requests")]
    key = f"{objective.budget.percentile}_ms" if objective.budget else "p50_ms"
    shown = best or min(levels, key=lambda lv: _nan_last(lv[key]), default=None)
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
        out |= {key: _num(shown.get(key)) for key in SHOWN}
        cost = objective.cost(shown)
        out["cost_per_million_usd"] = None if cost is None else round(cost, 6)
        if shown.get("failed") and not out["note"]:
            out["note"] = f"{shown['failed']}; first error: {shown.get('first_error')}"
    return out


def _nan_last(value: float) -> float:
    return math.inf if value is None or math.isnan(value) else value


def _num(value):
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4 if value < 1 else 2)
    return value


def markdown(rows: list[dict], objective: Objective | Budget, unit: str) -> str:
    objective = as_objective(objective)
    priced = objective.price is not None
    head = (
        "| rank | artifact | workers | threads | batch | delay ms | spin | meets objective | "
        f"at {unit} | successful req/s | p50 ms | p90 ms | p99 ms | errors | error rate |"
        + (" $ per M inferences |" if priced else "")
        + " status |"
    )
    lines = [f"Candidates ranked by {objective.describe()}.", "", head]
    lines.append("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        shown = [r.get(k, "") if r.get(k) is not None else "" for k in SHOWN]
        if r.get("error_rate") is not None:
            shown[-1] = f"{r['error_rate']:.1%}"
        if priced:
            shown.append("" if r.get("cost_per_million_usd") is None else f"{r['cost_per_million_usd']:.4f}")
        cells = [
            r["rank"],
            r["artifact"],
            r["workers"],
            r["threads"],
            r["batch_size"],
            r["max_batch_delay"],
            r["spinning"],
            "yes" if r["meets_budget"] else "no",
            *shown,
            r["status"] + (f": {r['note']}" if r["note"] else ""),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write(
    out_dir: Path,
    config: dict,
    machine: dict,
    results: list[dict],
    objective: Objective | Budget,
    names: Sequence[str],
    unit: str,
    interrupted: bool,
    extra: dict | None = None,
) -> tuple[dict[str, Path], list[dict]]:
    """Write the table, CSV, JSON and PNG; return the paths and the ranked results. `extra` (the machine's load,
    warnings, pricing) goes into results.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    objective = as_objective(objective)
    ranked = rank(results, objective)
    rows = [row(k, r, objective, names) for k, r in enumerate(ranked, 1)]
    paths = {
        "markdown": out_dir / "ranking.md",
        "csv": out_dir / "ranking.csv",
        "json": out_dir / "results.json",
        "png": out_dir / "pareto.png",
    }
    text = markdown(rows, objective, unit)
    references = (extra or {}).get("in_process_reference") or {}
    if references:  # the latency objective's in-process batch-1 reference, measured in the same run
        text += "\n" + "".join(
            f"- {reference.line(n, r.get('served_best_p50_ms'), r)}\n" for n, r in references.items()
        )
    paths["markdown"].write_text(text)
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in COLUMNS})
    doc = {
        "config": config,
        "machine": machine,
        "objective": objective.kind,
        "objective_described": objective.describe(),
        "budget": {"percentile": objective.budget.percentile, "ms": objective.budget.ms} if objective.budget else None,
        "max_error_rate": objective.max_error_rate,
        "pricing": objective.price.as_dict() if objective.price else None,
        **(extra or {}),
        "interrupted": interrupted,
        "ranking": rows,
        "candidates": [{**r, "candidate": r["candidate"].as_dict()} for r in ranked],
    }
    paths["json"].write_text(json.dumps(json_safe(doc), indent=2, default=str) + "\n")
    plot(results, objective, names, paths["png"], machine)
    return paths, ranked


def plot(results: list[dict], objective: Objective, names: Sequence[str], path: Path, machine: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = objective.budget
    percentile = budget.percentile if budget else "p50"
    key = f"{percentile}_ms"
    points, labels = [], []
    for r in results:
        for lv in r.get("levels", []):
            if lv.get("requests") and lv.get("ok", 1) and not math.isnan(lv[key]):
                points.append((lv["throughput_rps"], lv[key]))
                labels.append(r["candidate"].label(names if len(set(names)) > 1 else ()))
    fig, ax = plt.subplots(figsize=(8, 5))
    if points:
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=18, alpha=0.7, label="candidate x level")
        front = pareto(points)
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "r-o", ms=5, label="Pareto front")
        for i in front:
            ax.annotate(labels[i], points[i], textcoords="offset points", xytext=(4, 4), fontsize=6)
    if budget:
        ax.axhline(budget.ms, color="gray", ls="--", label=f"budget {budget.describe()}")
    ax.set_xlabel("throughput (successful requests/s)")
    ax.set_ylabel(f"{percentile} latency (ms)")
    ax.set_title("infkit tune: throughput vs latency", fontsize=10)
    ax.grid(alpha=0.3)
    if points or budget:
        ax.legend(fontsize=8)
    fig.text(0.01, 0.01, f"{machine.get('cpu_model', '')}, {machine.get('usable_cores')} cores", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
