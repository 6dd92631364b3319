"""torch-neuronx (Inf2/Trn1, NeuronCore-v2): torch_neuronx.trace -> <name>.neuronx.traced.pt.

Written against the documented torch-neuronx API (torch 2.9 pairing); the SDK is imported only when this backend
is used."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from infkit.compile import neuronx_trace
from infkit.compile._neuron_common import NeuronSDKBackend, sdk_version, stop_if_unsupported
from infkit.errors import InfkitError

log = logging.getLogger(__name__)

SDK = ("torch_neuronx", "neuronx", "torch-neuronx", "Inf2/Trn1; torch 2.9 as paired in the Neuron release")


def check_options(options: Mapping[str, Any]) -> None:
    """Option pairs the SDK does not support stop here, before anything is traced, naming the fix."""
    inline = bool(options.get("inline_weights_to_neff", True))
    if options.get("dynamic_batch") and not inline:
        raise InfkitError(
            "compile.dynamic_batch=true with compile.inline_weights_to_neff=false is not supported: dynamic batching "
            "does not work with weights kept out of the NEFF (optimum-neuron forces inlining for it); set "
            "compile.inline_weights_to_neff=true, or compile.dynamic_batch=false"
        )
    if options.get("fallback") and not inline:
        raise InfkitError(
            "compile.fallback=true with compile.inline_weights_to_neff=false is not supported: a partitioned model "
            "mixes CPU and Neuron submodules, and torch_neuronx.move_trace_to_device is documented for a traced "
            "Neuron module only; set compile.inline_weights_to_neff=true, or compile.fallback=false"
        )
    args = [str(a) for a in options.get("compiler_args") or []]
    if options.get("cpu_backend") and not any(a == "--target" or a.startswith("--target=") for a in args):
        raise InfkitError(
            "compile.cpu_backend=true needs the target in compiler_args (torch_neuronx.trace API reference): add "
            'compile.compiler_args=["--target","inf2"] (or trn1)'
        )


def trace_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for torch_neuronx.trace, JSON-ready (fallback becomes a PartitionerConfig at the call)."""
    kwargs: dict[str, Any] = {
        "compiler_args": [str(a) for a in options.get("compiler_args") or []] or None,
        "inline_weights_to_neff": bool(options.get("inline_weights_to_neff", True)),
    }
    if options.get("compiler_workdir"):
        kwargs["compiler_workdir"] = str(options["compiler_workdir"])
    if options.get("cpu_backend"):
        kwargs["cpu_backend"] = True
    return kwargs


class NeuronxBackend(NeuronSDKBackend):
    name = "neuronx"
    suffix = ".neuronx.traced.pt"
    sdk = SDK
    option_names = frozenset(
        {
            "compiler_args",
            "compiler_workdir",
            "inline_weights_to_neff",
            "dynamic_batch",
            "analyze",
            "fallback",
            "cpu_backend",
            "trace_in_subprocess",
        }
    )

    def compile(
        self, model: torch.nn.Module, example: torch.Tensor, options: Mapping[str, Any], path: Path
    ) -> dict[str, Any]:
        check_options(options)
        torch_neuronx = self._sdk()
        kwargs = trace_kwargs(options)
        fallback = bool(options.get("fallback", False))
        used = {
            **kwargs,
            "fallback": fallback,
            "dynamic_batch": bool(options.get("dynamic_batch", False)),
            "compiled_batch_size": int(example.shape[0]),
        }
        if options.get("analyze"):
            used["analyze"] = self._analyze_once(model, lambda: torch_neuronx.analyze(model, example))
            stop_if_unsupported(used["analyze"], fallback, self.name)
        if fallback and used["dynamic_batch"]:
            log.warning("neuronx: dynamic batching of a partitioned model is supported case by case (API reference)")
        spec = {"trace_kwargs": kwargs, "fallback": fallback, "dynamic_batch": used["dynamic_batch"]}
        where = "in a child process" if options.get("trace_in_subprocess", True) else "in this process"
        log.info("torch_neuronx.trace(%s) %s", ", ".join(f"{k}={v}" for k, v in used.items() if k != "analyze"), where)
        if options.get("trace_in_subprocess", True):
            log_path = path.with_name(path.name + ".trace.log")
            neuronx_trace.trace_in_child(model, example, spec, path, log_path)
        else:
            neuronx_trace.trace_and_save(model, example, spec, path)
        self._compiled_options = used
        return used

    def _prepare(self, sdk, module, options, data_parallel):
        if data_parallel:
            return sdk.DataParallel(module, set_dynamic_batching=True)
        if options.get("dynamic_batch"):
            # applied again after loading: the documented call is on the traced module, saving it is not documented
            module = sdk.dynamic_batch(module)
        if options.get("inline_weights_to_neff") is False:
            sdk.move_trace_to_device(module, 0)  # separated weights stay on CPU unless moved (first visible core)
        return module

    def versions(self) -> dict[str, str]:
        return {"torch-neuronx": sdk_version("torch-neuronx"), "neuronx-cc": sdk_version("neuronx-cc")}
