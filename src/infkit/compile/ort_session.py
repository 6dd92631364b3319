"""ONNX Runtime sessions for serving, shared by the onnx and onnx_int8 backends.

Thread spinning (`session.intra_op.allow_spinning`) makes idle intra-op threads busy-wait for the next piece of work:
it can shave latency when those threads have their cores to themselves, and it burns CPU that other processes need
when they do not. Compilation measures both settings on this machine and records the choice in the manifest;
serving turns spinning on only where that choice says it helps *and* the worker does not share its cores."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from infkit.errors import InfkitError
from infkit.utils.cpu import usable_cores

if TYPE_CHECKING:  # a served artifact runs on numpy arrays without torch; compile-time checks pass tensors
    import torch

log = logging.getLogger(__name__)

#: spinning is kept only when it makes a call at least this much faster (it costs CPU time)
MIN_GAIN = 0.05


def session(path: Path, threads: int | None = None, spinning: bool = False):
    """An InferenceSession: all graph optimisations, `threads` intra-op threads (ONNX Runtime's default when None),
    one inter-op thread, spinning as asked."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    return ort.InferenceSession(str(path), sess_options=so, providers=providers)


def runner(sess):
    """A callable (N,C,H,W) float batch -> (N,classes) logits of the same kind: a numpy array for a numpy array (the
    torch-free serving path, infkit.serve.core.runtime), a tensor for a tensor (compile-time checks, benchmarks)."""
    input_name = sess.get_inputs()[0].name

    def run(x):
        if isinstance(x, np.ndarray):
            (logits,) = sess.run(None, {input_name: np.ascontiguousarray(x, dtype=np.float32)})
            return logits
        import torch  # x is a tensor: torch is loaded already

        (logits,) = sess.run(None, {input_name: x.detach().cpu().numpy()})
        return torch.from_numpy(logits)

    run.session = sess  # for inspection (tests, debugging)
    return run


def _median_ms(path: Path, x: np.ndarray, threads: int, spinning: bool, max_seconds: float = 1.5) -> float:
    sess = session(path, threads, spinning)
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(3):
        sess.run(None, feed)
    times, deadline = [], time.perf_counter() + max_seconds
    while len(times) < 5 or (len(times) < 40 and time.perf_counter() < deadline):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def _setting(value: Any) -> bool | None:
    """compile.allow_spinning: auto (None: measure), true or false."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("auto", "none", "null"):
        return None
    if text in ("true", "false"):
        return text == "true"
    raise InfkitError(f"compile.allow_spinning={value} is not valid; use auto (measure both), true or false")


def choose_spinning(
    path: Path, example: torch.Tensor, setting: Any = "auto", threads: int | None = None, rounds: int = 2
) -> dict[str, Any]:
    """{"allow_spinning": bool, ...}: as configured, or measured here with both settings (alternating rounds,
    best of each) at the example's batch size and all usable cores."""
    fixed = _setting(setting)
    if fixed is not None:
        return {"allow_spinning": fixed, "spinning_choice": "configured"}
    threads = threads or usable_cores()
    if threads < 2:
        return {"allow_spinning": False, "spinning_choice": "one intra-op thread: nothing to spin"}
    x = example.detach().cpu().numpy()
    best = {True: float("inf"), False: float("inf")}
    for _ in range(rounds):
        for spinning in (True, False):
            best[spinning] = min(best[spinning], _median_ms(path, x, threads, spinning))
    on = best[True] < (1 - MIN_GAIN) * best[False]
    log.info(
        "ONNX Runtime spinning, %d threads, batch %d: on %.2f ms, off %.2f ms per call -> %s",
        threads,
        len(x),
        best[True],
        best[False],
        "on (where the worker has its cores to itself)" if on else "off",
    )
    return {
        "allow_spinning": on,
        "spinning_choice": "measured",
        "spinning_measured": {
            "threads": threads,
            "batch_size": len(x),
            "on_ms": round(best[True], 3),
            "off_ms": round(best[False], 3),
        },
    }
