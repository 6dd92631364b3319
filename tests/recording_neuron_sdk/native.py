"""The stand-in's TorchNeuron (torch-neuronx 2.13/2.14, the native backend; tests only): what importing it registers,
as the Neuron documentation describes it (torch/reference/api/torch-neuron-module,
torch/compile/reference-torch-compile):
a `torch.neuron` device module (is_available, device_count) and a torch.compile backend named "neuron".

It proves call shapes, never compilation: the backend records each graph dynamo hands it (the input shapes, and the
TORCH_NEURONX_* / NEURON_RT_* environment at that moment), writes a placeholder file (not a NEFF) into
TORCH_NEURONX_NEFF_CACHE_DIR as the real backend writes its NEFFs there, and runs the graph eagerly on the CPU. There
is no `neuron` device here: the tests put "cpu" in its place (infkit.compile.neuron_native.DEVICE)."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import torch

NATIVE_ENV_KEYS = ("TORCH_NEURONX_NEFF_CACHE_DIR", "TORCH_NEURONX_DISABLE_FALLBACK_EXECUTION")


def build(sdk) -> ModuleType:
    from torch._dynamo.backends import registry

    m = ModuleType("torch_neuronx")

    class NeuronDeviceModule(ModuleType):
        def is_available(self) -> bool:
            sdk.record("torch.neuron.is_available")
            return sdk.devices > 0

        def device_count(self) -> int:
            sdk.record("torch.neuron.device_count")
            return sdk.devices

    def neuron_backend(gm, example_inputs):
        shapes = [tuple(t.shape) for t in example_inputs]
        call = sdk.record("torch.compile backend=neuron", shapes=shapes)
        cache = os.environ.get("TORCH_NEURONX_NEFF_CACHE_DIR")
        if cache:  # the real backend writes the NEFF here; this placeholder only marks that a shape was compiled
            name = "x".join(str(d) for d in shapes[0]) if shapes else "none"
            Path(cache).mkdir(parents=True, exist_ok=True)
            (Path(cache) / f"stand-in-{name}.not-a-neff").write_text("stand-in: not a NEFF\n")
        if sdk.compile_error:
            raise RuntimeError(sdk.compile_error)
        call.kwargs["graph_nodes"] = len(gm.graph.nodes)
        return gm.forward

    torch.neuron = NeuronDeviceModule("torch.neuron")
    registered = registry._COMPILER_FNS.get("neuron")
    if registered is not None and not getattr(registered, "stand_in", False):
        raise RuntimeError("a torch.compile backend 'neuron' is already registered: the stand-in must not shadow it")
    unregister()  # a worker's fresh import registers it again
    neuron_backend.stand_in = True
    torch._dynamo.register_backend(neuron_backend, name="neuron")
    m.__version__ = sdk.distributions.get("torch-neuronx", "stand-in")
    return m


def unregister() -> None:
    from torch._dynamo.backends import registry

    registry._COMPILER_FNS.pop("neuron", None)
    registry._BACKENDS.pop("neuron", None)
    torch._dynamo.reset()
