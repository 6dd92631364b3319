"""torch_neuronx.trace, in a child process by default: a trace that dies by a signal (tracing some vision models
segfaults with torch-neuronx 2.9, aws-neuron-sdk issue #1265) then ends in one line naming the issue and its
documented workaround, and what was written before it (the eager weights, the compiler's log) stays."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from infkit.errors import InfkitError

#: a fresh interpreter imports the SDK itself; the contract tests use "fork" so the child inherits the stand-in
START_METHOD = "spawn"
ISSUE = "https://github.com/aws-neuron/aws-neuron-sdk/issues/1265"


def trace_and_save(model: torch.nn.Module, example: torch.Tensor, spec: Mapping[str, Any], path: Path) -> None:
    """The SDK calls: trace (with a PartitionerConfig carrying the subgraph options when falling back to CPU),
    dynamic_batch when asked, torch.jit.save. `spec` is JSON-ready: it crosses the process boundary."""
    import torch_neuronx

    call = dict(spec["trace_kwargs"])
    if spec["fallback"]:
        # the Neuron subgraphs get the compile options through trace_kwargs (API reference: PartitionerConfig)
        call = {"partitioner_config": torch_neuronx.PartitionerConfig(trace_kwargs=call)}
    traced = torch_neuronx.trace(model, example, **call)
    if spec["dynamic_batch"]:
        traced = torch_neuronx.dynamic_batch(traced)
    torch.jit.save(traced, str(path))


def _child(model, example, spec, path: str, log_path: str, error_path: str) -> None:
    with open(log_path, "ab", buffering=0) as log:  # the compiler's output (and a fault handler's) goes here
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    torch.set_num_threads(1)  # a forked child must not enter the parent's OpenMP pool
    try:
        trace_and_save(model, example, spec, Path(path))
    except BaseException as exc:  # one line for the parent, the traceback for the log
        traceback.print_exc()
        text = str(exc).strip().splitlines()
        Path(error_path).write_text(f"{type(exc).__name__}: {text[0] if text else ''}")
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()


def signal_message(code: int, batch_size: int, log_path: Path) -> str:
    """The one line for a trace that died by signal -code."""
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return (
        f"compile=neuronx: torch_neuronx.trace died by {name} at batch size {batch_size}; tracing some vision "
        f"models segfaults with torch-neuronx 2.9 (known issue, aws-neuron-sdk issue #1265: {ISSUE}); the "
        f'documented workaround is torch-neuronx 2.8 (pip install "torch-neuronx==2.8.*" from the Neuron pip '
        f"repository into a torch 2.8 environment of Neuron 2.28, the last release with PyTorch 2.8). Kept in "
        f"{log_path.parent}: the eager weights (*.eager.pt) and the trace log ({log_path.name})"
    )


def trace_in_child(model, example, spec: Mapping[str, Any], path: Path, log_path: Path) -> None:
    """trace_and_save in a child process; a signal or an exception there becomes one InfkitError line here."""
    path, log_path = Path(path), Path(log_path)
    error_path = log_path.with_suffix(".error")
    error_path.unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    ctx = multiprocessing.get_context(START_METHOD)
    proc = ctx.Process(
        target=_child, args=(model, example, dict(spec), str(path), str(log_path), str(error_path)), daemon=False
    )
    proc.start()
    proc.join()
    code = proc.exitcode
    bs = int(example.shape[0])
    if code is not None and code < 0:
        raise InfkitError(signal_message(code, bs, log_path))
    if code != 0 or not path.is_file():
        why = error_path.read_text().strip() if error_path.is_file() else f"exit status {code}, no artifact written"
        raise InfkitError(f"compile=neuronx: torch_neuronx.trace failed at batch size {bs}: {why}; log: {log_path}")
    error_path.unlink(missing_ok=True)
