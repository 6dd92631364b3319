"""The stand-in's torch_neuron (torch-neuron, Inf1; tests only), with the signatures of the archived documentation
(archive/torch-neuron/: api-compilation-python-api.rst, api-torch-neuron-dataparallel-api.rst), and what neuron-cc
refuses: an unknown --fast-math value."""

from __future__ import annotations

import enum
import inspect
from types import ModuleType

import torch

#: torch_neuron.trace's documented keywords (archive/torch-neuron/api-compilation-python-api.rst); others go to
#: torch.jit.trace
TORCH_NEURON_TRACE_KEYWORDS = {
    "compiler_args",
    "compiler_timeout",
    "compiler_workdir",
    "subgraph_builder_function",
    "minimum_segment_size",
    "single_fusion_ratio_threshold",
    "fallback",
    "dynamic_batch_size",
    "optimizations",
    "separate_weights",
}

#: neuron-cc's documented --fast-math values (the neuron-cc CLI reference); neuron-cc refuses any other
FAST_MATH_VALUES = {
    "all",
    "none",
    "fast-relayout",
    "no-fast-relayout",
    "fp32-cast-all",
    "fp32-cast-all-fp16",
    "fp32-cast-matmult",
    "fp32-cast-matmult-bf16",
    "fp32-cast-matmult-fp16",
}


def _fast_math_values(args) -> list[str]:
    """The values following --fast-math in a neuron-cc argument list (up to the next --flag)."""
    args = [str(a) for a in args or []]
    if "--fast-math" not in args:
        return []
    rest = args[args.index("--fast-math") + 1 :]
    return [a for a in rest[: next((i for i, a in enumerate(rest) if a.startswith("--")), len(rest))]]


def build(sdk) -> ModuleType:
    from tests.recording_neuron_sdk import _DataParallel, _tensors

    m = ModuleType("torch_neuron")
    jit_keywords = set(inspect.signature(torch.jit.trace).parameters) - {"func", "example_inputs"}

    class Optimization(enum.Enum):
        FLOAT32_TO_FLOAT16 = 1

    def trace(model, example_inputs, **kwargs):
        unknown = set(kwargs) - TORCH_NEURON_TRACE_KEYWORDS - jit_keywords
        if unknown:
            raise TypeError(f"torch.neuron.trace got unexpected keyword(s) {sorted(unknown)}")
        args = kwargs.get("compiler_args")
        if args is not None and not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
            raise TypeError("compiler_args must be a list of str")
        bad = [v for v in _fast_math_values(args) if v not in FAST_MATH_VALUES]
        if bad:  # neuron-cc stops on an unknown value
            raise ValueError(f"neuron-cc: invalid --fast-math value(s) {bad}")
        if not all(isinstance(o, Optimization) for o in kwargs.get("optimizations") or []):
            raise TypeError("optimizations must be torch_neuron.Optimization members")
        sdk.record("torch.neuron.trace", model, example_inputs, **kwargs)
        with torch.no_grad():
            return torch.jit.trace(model, _tensors(example_inputs))

    def analyze_model(model, example_inputs=None, compiler_args=None, **kwargs):
        sdk.record("torch.neuron.analyze_model", model, example_inputs=example_inputs)
        _tensors(example_inputs)  # logs its operator table; no documented return value

    class DataParallel(_DataParallel):
        def __init__(self, model, device_ids=None, dim=0):
            super().__init__(sdk, "torch.neuron.DataParallel", model, device_ids=device_ids, dim=dim)

    for obj in (Optimization, trace, analyze_model, DataParallel):
        setattr(m, obj.__name__, obj)
    return m
