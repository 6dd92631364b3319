"""torch-neuron (Inf1, NeuronCore-v1): torch.neuron.trace -> <name>.neuron.traced.pt.

Written against the documented torch-neuron API; the SDK is imported only when this backend is used.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from infkit.compile._neuron_common import NeuronSDKBackend, sdk_version
from infkit.errors import InfkitError

log = logging.getLogger(__name__)

SDK = ("torch_neuron", "neuron", "torch-neuron", "Inf1; torch 1.x on Python 3.7-3.10")


def pipeline_cores_for(num_params: int) -> int:
    """The field notes' rule: 4 * round(parameters / 2e7) NeuronCores (0: no pipelining).
    Rounds half up, so 3e7 parameters (1.5) -> 8 cores."""
    return 4 * int(math.floor(num_params / 2e7 + 0.5))


def compiler_args_for(options: Mapping[str, Any], num_params: int) -> list[str]:
    """neuron-cc arguments from the config: pipeline cores (auto / int / null), fast-math, extras."""
    args: list[str] = []
    cores = options.get("pipeline_cores", "auto")
    if cores == "auto":
        cores = pipeline_cores_for(num_params)
    elif cores is not None:
        try:
            cores = int(cores)
        except (TypeError, ValueError):
            cores = -1
        if cores < 0:
            raise InfkitError(f"compile.pipeline_cores={options.get('pipeline_cores')!r} is not valid; "
                              "use auto, null or a whole number of NeuronCores such as 4")
    if cores:
        args += ["--neuroncore-pipeline-cores", str(cores)]
    fast_math = options.get("fast_math")
    if fast_math not in (None, ""):
        values = fast_math if isinstance(fast_math, (list, tuple)) else str(fast_math).split()
        args += ["--fast-math", *[str(v) for v in values]]
    args += [str(a) for a in options.get("compiler_args") or []]
    return args


def trace_kwargs(options: Mapping[str, Any], num_params: int) -> dict[str, Any]:
    """Keyword arguments for torch.neuron.trace."""
    return {
        "compiler_args": compiler_args_for(options, num_params),
        "dynamic_batch_size": bool(options.get("dynamic_batch_size", False)),
    }


class NeuronBackend(NeuronSDKBackend):
    name = "neuron"
    suffix = ".neuron.traced.pt"
    sdk = SDK

    def compile(self, model: torch.nn.Module, example: torch.Tensor, options: Mapping[str, Any],
                path: Path) -> dict[str, Any]:
        self._sdk()  # registers torch.neuron
        num_params = sum(p.numel() for p in model.parameters())
        kwargs = trace_kwargs(options, num_params)
        if options.get("analyze"):
            torch.neuron.analyze_model(model, example_inputs=[example])
        log.info("torch.neuron.trace(compiler_args=%s, dynamic_batch_size=%s)",
                 kwargs["compiler_args"], kwargs["dynamic_batch_size"])
        traced = torch.neuron.trace(model, example_inputs=[example], **kwargs)
        traced.save(str(path))
        return kwargs

    def versions(self) -> dict[str, str]:
        return {"torch-neuron": sdk_version("torch-neuron"), "neuron-cc": sdk_version("neuron-cc")}
