"""Backend name -> implementation. Modules import lazily, so an optional SDK is only probed when asked."""

from __future__ import annotations

import importlib
import logging

from infkit.compile.base import Backend
from infkit.errors import InfkitError

log = logging.getLogger(__name__)

# name -> "module:Class"; adding a backend is one line here, one module, one configs/compile/*.yaml
BACKENDS: dict[str, str] = {
    "neuron": "infkit.compile.neuron:NeuronBackend",
    "neuronx": "infkit.compile.neuronx:NeuronxBackend",
    "torchscript": "infkit.compile.torchscript:TorchScriptBackend",
    "onnx": "infkit.compile.onnx:OnnxBackend",
    "onnx_int8": "infkit.compile.onnx_int8:OnnxInt8Backend",
    "export": "infkit.compile.export:ExportBackend",
}

# the backends that run on any CPU (the demo compiles each; the benchmark measures each)
CPU_BACKENDS = ("torchscript", "onnx", "onnx_int8", "export")

# the order `auto` tries them in
AUTO_ORDER = ("neuron", "neuronx", "torchscript")


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise InfkitError(f"unknown backend {name!r}; choose one of: auto, {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def resolve_backend(name: str) -> Backend:
    """The backend for `name`; `auto` takes the first of AUTO_ORDER that can compile here."""
    if name != "auto":
        backend = get_backend(name)
        reason = backend.unavailable_reason()
        if reason:
            raise InfkitError(reason)
        return backend
    skipped = []
    for candidate in AUTO_ORDER:
        backend = get_backend(candidate)
        reason = backend.unavailable_reason()
        if reason is None:
            why = f"; skipped {', '.join(skipped)}" if skipped else ""
            log.info("compile=auto chose %s: first of %s that imports here%s", candidate, "/".join(AUTO_ORDER), why)
            return backend
        skipped.append(f"{candidate} (SDK not importable)")
    raise InfkitError("compile=auto found no usable backend")  # torchscript is always there
