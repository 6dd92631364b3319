"""Backend name -> implementation. Modules import lazily, so an optional SDK is only probed when asked."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from infkit.compile import auto
from infkit.compile.base import Backend
from infkit.errors import InfkitError

# name -> "module:Class"; adding a backend is one line here, one module, one configs/compile/*.yaml
BACKENDS: dict[str, str] = {
    "neuron": "infkit.compile.neuron:NeuronBackend",
    "neuronx": "infkit.compile.neuronx:NeuronxBackend",
    "neuron_native": "infkit.compile.neuron_native:NeuronNativeBackend",
    "torchscript": "infkit.compile.torchscript:TorchScriptBackend",
    "onnx": "infkit.compile.onnx:OnnxBackend",
    "onnx_int8": "infkit.compile.onnx_int8:OnnxInt8Backend",
    "export": "infkit.compile.export:ExportBackend",
}

# the backends that run on any CPU (the demo compiles each; the benchmark measures each)
CPU_BACKENDS = ("torchscript", "onnx", "onnx_int8", "export")

# the backends `auto` considers, in order (infkit.compile.auto says which it takes where)
AUTO_ORDER = auto.ORDER


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise InfkitError(f"unknown backend {name!r}; choose one of: auto, {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def resolve(name: str, prepare: Callable[[Backend], None] | None = None) -> tuple[Backend, auto.Choice | None]:
    """The backend for `name` and, for `auto`, what it chose and why. `prepare(backend)` runs before the SDK of a
    backend with `env_before_import` is first imported (neuron_native's environment variables)."""
    if name == "auto":
        return auto.choose(get_backend, prepare)
    backend = get_backend(name)
    if prepare is not None and getattr(backend, "env_before_import", False):
        prepare(backend)
    reason = backend.unavailable_reason()
    if reason:
        raise InfkitError(reason)
    return backend, None


def resolve_backend(name: str, prepare: Callable[[Backend], None] | None = None) -> Backend:
    return resolve(name, prepare)[0]
