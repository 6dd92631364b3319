"""torch-neuron (Inf1, NeuronCore-v1): torch.neuron.trace -> <name>.neuron.traced.pt.

Written against the documented torch-neuron API (its last release is built on torch 1.13: see docs/inferentia.md);
the SDK is imported only when this backend is used."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from infkit.compile._neuron_common import NeuronSDKBackend, sdk_version, stop_if_unsupported
from infkit.errors import InfkitError

log = logging.getLogger(__name__)

SDK = ("torch_neuron", "neuron", "torch-neuron", "Inf1; torch 1.13 on Python 3.9-3.10")

#: torch.neuron.trace keywords the config passes through when set (null: the SDK's default)
PASS_THROUGH = {
    "compiler_timeout": int,
    "compiler_workdir": str,
    "minimum_segment_size": int,
    "single_fusion_ratio_threshold": float,
}


#: neuron-cc's documented --fast-math values (neuron-cc CLI reference, "Mixed precision and performance-accuracy
#: tuning"); "all" and "none" exclude each other and every other value
FAST_MATH = (
    "all",
    "none",
    "fast-relayout",
    "no-fast-relayout",
    "fp32-cast-all",
    "fp32-cast-all-fp16",
    "fp32-cast-matmult",
    "fp32-cast-matmult-bf16",
    "fp32-cast-matmult-fp16",
)


def fast_math_values(value: Any) -> list[str]:
    """compile.fast_math as neuron-cc's values, checked against the documented list (a misspelling such as
    fp32-cast-matmul would otherwise reach the compiler)."""
    if value in (None, ""):
        return []
    values = [str(v) for v in (value if isinstance(value, (list, tuple)) else str(value).split())]
    bad = [v for v in values if v not in FAST_MATH]
    if bad:
        raise InfkitError(
            f"compile.fast_math: {', '.join(bad)} is not a neuron-cc --fast-math value; valid: {', '.join(FAST_MATH)}"
        )
    if len(values) > 1 and ({"all", "none"} & set(values)):
        raise InfkitError(f"compile.fast_math={' '.join(values)!r}: 'all' and 'none' go alone (neuron-cc)")
    return values


def pipeline_cores_for(num_params: int) -> int:
    """The original lightning-hydra-timm project's rule: 4 * round(parameters / 2e7) NeuronCores (0: no pipelining).
    Rounds half up, so 3e7 parameters (1.5) -> 8 cores."""
    return 4 * math.floor(num_params / 2e7 + 0.5)


def resolve_pipeline_cores(options: Mapping[str, Any], num_params: int) -> int:
    """compile.pipeline_cores: auto (the rule), a whole number, or null (0: never pipelined)."""
    cores = options.get("pipeline_cores", "auto")
    if cores == "auto":
        return pipeline_cores_for(num_params)
    if cores is None:
        return 0
    try:
        cores = int(cores)
    except (TypeError, ValueError):
        cores = -1
    if cores < 0:
        raise InfkitError(
            f"compile.pipeline_cores={options.get('pipeline_cores')!r} is not valid; "
            "use auto, null or a whole number of NeuronCores such as 4"
        )
    return cores


def compiler_args_for(options: Mapping[str, Any], num_params: int) -> list[str]:
    """neuron-cc arguments from the config: pipeline cores (auto / int / null), fast-math, extras."""
    args: list[str] = []
    cores = resolve_pipeline_cores(options, num_params)
    if cores:
        args += ["--neuroncore-pipeline-cores", str(cores)]
    values = fast_math_values(options.get("fast_math"))
    if values:
        args += ["--fast-math", *values]
    args += [str(a) for a in options.get("compiler_args") or []]
    return args


def _cast(key: str, value: Any, kind: type) -> Any:
    try:
        out = kind(value)
    except (TypeError, ValueError):
        out = None
    if out is None or (kind is not str and out <= 0):
        raise InfkitError(
            f"compile.{key}={value!r} is not valid; give a positive {kind.__name__} or null (the SDK's default)"
        )
    return out


def trace_kwargs(options: Mapping[str, Any], num_params: int) -> dict[str, Any]:
    """Keyword arguments for torch.neuron.trace, JSON-ready (optimizations by name; see optimizations_for)."""
    kwargs: dict[str, Any] = {
        "compiler_args": compiler_args_for(options, num_params),
        "fallback": bool(options.get("fallback", True)),
        "dynamic_batch_size": bool(options.get("dynamic_batch_size", False)),
        "separate_weights": bool(options.get("separate_weights", False)),
    }
    for key, kind in PASS_THROUGH.items():
        if options.get(key) is not None:
            kwargs[key] = _cast(key, options[key], kind)
    if options.get("optimizations"):
        kwargs["optimizations"] = [str(o) for o in options["optimizations"]]
    return kwargs


def optimizations_for(names: list[str], sdk) -> list[Any]:
    """torch_neuron.Optimization members by name, e.g. FLOAT32_TO_FLOAT16."""
    enum = sdk.Optimization
    known = [n for n in dir(enum) if n.isupper()]
    bad = [n for n in names if n not in known]
    if bad:
        raise InfkitError(
            f"compile.optimizations: {', '.join(bad)} unknown to this torch-neuron; valid: {', '.join(known) or 'none'}"
        )
    return [getattr(enum, n) for n in names]


class NeuronBackend(NeuronSDKBackend):
    name = "neuron"
    suffix = ".neuron.traced.pt"
    sdk = SDK
    option_names = frozenset(
        {
            "pipeline_cores",
            "fast_math",
            "compiler_args",
            "compiler_timeout",
            "compiler_workdir",
            "fallback",
            "optimizations",
            "separate_weights",
            "dynamic_batch_size",
            "minimum_segment_size",
            "single_fusion_ratio_threshold",
            "analyze",
        }
    )

    def compile(
        self, model: torch.nn.Module, example: torch.Tensor, options: Mapping[str, Any], path: Path
    ) -> dict[str, Any]:
        sdk = self._sdk()  # registers torch.neuron
        num_params = sum(p.numel() for p in model.parameters())
        kwargs = trace_kwargs(options, num_params)
        used = {
            **kwargs,
            "pipeline_cores": resolve_pipeline_cores(options, num_params),
            "compiled_batch_size": int(example.shape[0]),
        }
        if options.get("analyze"):
            used["analyze"] = self._analyze_once(
                model, lambda: torch.neuron.analyze_model(model, example_inputs=[example])
            )
            stop_if_unsupported(used["analyze"], kwargs["fallback"], self.name)
        call = dict(kwargs)
        if "optimizations" in call:
            call["optimizations"] = optimizations_for(call["optimizations"], sdk)
        log.info("torch.neuron.trace(%s)", ", ".join(f"{k}={v}" for k, v in kwargs.items()))
        traced = torch.neuron.trace(model, example_inputs=[example], **call)
        traced.save(str(path))
        self._compiled_options = used
        return used

    def _prepare(self, sdk, module, options, data_parallel):
        if data_parallel:
            # dynamic batching is on by default; a batch of 1 still runs on one core (split_size = batch // cores)
            return torch.neuron.DataParallel(module)
        return module

    def versions(self) -> dict[str, str]:
        return {"torch-neuron": sdk_version("torch-neuron"), "neuron-cc": sdk_version("neuron-cc")}
