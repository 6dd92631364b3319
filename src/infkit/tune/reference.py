"""The in-process reference for a latency-first tune: the artifact's own batch-1 latency with every usable core, in a
fresh process (bench_model's worker), measured in the same run as the served candidates. The gap between the two is
what serving costs a lone client: HTTP, the frontend, the worker round trip, the handler's decode and top-k."""

from __future__ import annotations

from pathlib import Path

from infkit.bench.model_bench import measure
from infkit.compile import manifest as mf
from infkit.errors import InfkitError
from infkit.utils.cpu import usable_cores


def spec(artifact_dir: Path, iterations: int = 200, max_seconds: float = 8.0) -> dict:
    """bench_model's worker spec for the first artifact of a compile folder at batch 1, as served: ONNX Runtime's
    spinning as compile chose it, every usable core (what a lone client's request can use)."""
    manifest = mf.read(Path(artifact_dir))
    first = manifest["artifacts"][0]
    return {
        "backend": manifest["backend"],
        "path": str(Path(artifact_dir) / first["file"]),
        "input_size": list(manifest["input_size"]),
        "batch_sizes": [1],
        "threads": usable_cores(),
        "warmup": 10,
        "iterations": iterations,
        "max_seconds": max_seconds,
        "spinning": (manifest.get("backend_options") or {}).get("allow_spinning"),
        "static_batch": first.get("batch_size") is not None,
    }


def batch1(artifact_dir: Path, iterations: int = 200, max_seconds: float = 8.0) -> dict:
    """{'p50_ms', 'p90_ms', 'iterations', 'threads', 'backend'} of the model call alone at batch 1, or
    {'error': why} when it cannot be measured here (the tune's own result stands either way)."""
    s = spec(artifact_dir, iterations, max_seconds)
    try:
        row = measure(s)["results"][0]
    except InfkitError as exc:
        return {"backend": s["backend"], "error": f"the in-process measurement failed: {exc}"}
    return {
        "backend": s["backend"],
        "threads": s["threads"],
        "iterations": row["iterations"],
        "p50_ms": row["p50_ms"],
        "p90_ms": row["p90_ms"],
    }


def line(name: str, served_p50_ms: float | None, ref: dict) -> str:
    """One summary line: the winner's served p50 beside the in-process batch-1 p50 and the difference."""
    if "error" in ref:
        return f"in-process reference for {name}: {ref['error']}"
    text = f"in-process batch 1 ({ref['backend']}, {ref['threads']} threads): p50 {ref['p50_ms']:.2f} ms"
    if served_p50_ms is None:
        return f"{name}: {text}"
    gap = served_p50_ms - ref["p50_ms"]
    return f"{name}: served p50 {served_p50_ms:.2f} ms; {text}; serving adds {gap:+.2f} ms"
