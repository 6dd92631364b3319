"""A recording stand-in for the AWS Neuron SDK (torch_neuron, torch_neuronx, and the torch_xla that torch-neuronx
pulls in; with use_native(), torch_neuronx is TorchNeuron instead: native.py). For tests only: nothing outside tests/
may import it (a test checks).

It proves call shapes, never compilation. Each documented function is defined with the signature the Neuron
documentation gives it, so a wrong keyword fails as it would on the real SDK; each call is recorded together with
the NEURON_RT_* environment at that moment; each returns what the documentation says it returns, built from plain
torch on the CPU (a torch.jit.trace of the model stands in for the compiled artifact). Numbers from anything run
through it say nothing about Inferentia.

Install with `tests.recording_neuron_sdk.importer.install()` (the tests' `neuron_sdk` fixture does): a meta-path
finder creates the modules when infkit imports them, so the import itself is recorded, with the environment it saw.
"""

from __future__ import annotations

import copy
import importlib
import os
import signal
from dataclasses import dataclass, field
from types import ModuleType

import torch

ENV_KEYS = ("NEURON_RT_NUM_CORES", "NEURON_RT_VISIBLE_CORES")
MODULES = ("torch_neuron", "torch_neuronx", "torch_xla", "torch_xla.core", "torch_xla.core.xla_model")

TRACE_KWARGS = {"compiler_workdir", "compiler_args", "inline_weights_to_neff", "cpu_backend", "input_output_aliases"}

FULL_SUPPORT = {
    "torch_neuronx_version": "stand-in",
    "neuronx_cc_version": "stand-in",
    "support_percentage": "100.00%",
    "supported_operators": {"aten::_convolution": 20, "aten::relu": 17},
    "unsupported_operators": [],
}


def env_now() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in ENV_KEYS}


@dataclass
class Call:
    name: str
    args: tuple
    kwargs: dict
    env: dict = field(default_factory=env_now)


def _tensors(example) -> tuple:
    """example_inputs as documented: one tensor, or a tuple (torch-neuron's examples also pass a list)."""
    items = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    if not items or not all(isinstance(t, torch.Tensor) for t in items):
        raise TypeError(f"example_inputs must be a tensor or a tuple of tensors, got {type(example).__name__}")
    return items


class RecordingNeuronSDK:
    """The recorded calls and imports, and the modules built on import."""

    def __init__(self):
        self.calls: list[Call] = []
        self.imports: list[tuple[str, dict]] = []
        #: what torch_neuronx.analyze returns (tests change it to simulate unsupported operators)
        self.analysis: dict = copy.deepcopy(FULL_SUPPORT)
        #: pip packages the stand-in reports as installed (importlib.metadata), name -> version
        self.distributions: dict[str, str] = {}
        #: torch_neuronx is TorchNeuron (native.py) instead of the XLA-based API; its `neuron` devices
        self.native = False
        self.devices = 0
        #: a signal torch_neuronx.trace kills its process with (aws-neuron-sdk issue #1265), and an error the native
        #: compile backend raises
        self.trace_signal: int | None = None
        self.compile_error: str | None = None

    def use_native(self, version: str = "2.14.3.0.0", devices: int = 2) -> RecordingNeuronSDK:
        """torch-neuronx `version` of the native line, with `devices` neuron devices."""
        self.native, self.devices = True, devices
        self.distributions["torch-neuronx"] = version
        return self

    def env_now(self) -> dict[str, str | None]:
        from tests.recording_neuron_sdk.native import NATIVE_ENV_KEYS

        return {k: os.environ.get(k) for k in ENV_KEYS + (NATIVE_ENV_KEYS if self.native else ())}

    def record(self, name: str, *args, **kwargs) -> Call:
        call = Call(name, args, kwargs, self.env_now())
        self.calls.append(call)
        return call

    def calls_to(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    # -- torch_neuronx (frameworks/torch/torch-neuronx/api-reference-guide/inference/) -------------------------
    def build_torch_neuronx(self) -> ModuleType:
        sdk = self
        importlib.import_module("torch_xla.core.xla_model")  # the real torch-neuronx pulls torch_xla in
        m = ModuleType("torch_neuronx")

        def trace(
            func,
            example_inputs,
            *_,
            input_output_aliases=None,
            compiler_workdir=None,
            compiler_args=None,
            partitioner_config=None,
            inline_weights_to_neff=True,
            cpu_backend=False,
        ):
            if input_output_aliases is None:
                input_output_aliases = {}
            if _:
                raise TypeError("torch_neuronx.trace: keyword arguments passed positionally")
            if cpu_backend and "--target" not in " ".join(str(a) for a in compiler_args or []):
                raise ValueError("cpu_backend=True requires a --target in compiler_args")  # the API reference
            if sdk.trace_signal is not None:
                os.kill(os.getpid(), sdk.trace_signal)
                signal.pause()
            sdk.record(
                "torch_neuronx.trace",
                func,
                example_inputs,
                input_output_aliases=input_output_aliases,
                compiler_workdir=compiler_workdir,
                compiler_args=compiler_args,
                partitioner_config=partitioner_config,
                inline_weights_to_neff=inline_weights_to_neff,
                cpu_backend=cpu_backend,
            )
            with torch.no_grad():
                return torch.jit.trace(func, _tensors(example_inputs))

        def analyze(
            func,
            example_inputs,
            compiler_workdir=None,
            additional_ignored_ops=None,
            max_workers=4,
            is_hf_transformers=False,
            cleanup=False,
        ):
            sdk.record("torch_neuronx.analyze", func, example_inputs, compiler_workdir=compiler_workdir)
            _tensors(example_inputs)
            return copy.deepcopy(sdk.analysis)

        def dynamic_batch(neuron_script):
            sdk.record("torch_neuronx.dynamic_batch", neuron_script)
            return neuron_script  # documented: modified in place, the same module returned

        def move_trace_to_device(trace, device_id):
            sdk.record("torch_neuronx.move_trace_to_device", trace, device_id)

        class PartitionerConfig:
            def __init__(
                self,
                *,
                trace_kwargs=None,
                model_support_percentage_threshold=0.5,
                min_subgraph_size=-1,
                max_subgraph_count=-1,
                ops_to_partition=None,
                analyze_parameters=None,
            ):
                unknown = set(trace_kwargs or {}) - TRACE_KWARGS
                if unknown:
                    raise TypeError(
                        f"PartitionerConfig trace_kwargs: not torch_neuronx.trace keywords {sorted(unknown)}"
                    )
                sdk.record(
                    "torch_neuronx.PartitionerConfig",
                    trace_kwargs=trace_kwargs,
                    model_support_percentage_threshold=model_support_percentage_threshold,
                )

        class DataParallel(_DataParallel):
            def __init__(self, model, device_ids=None, dim=0, set_dynamic_batching=True):
                super().__init__(
                    sdk,
                    "torch_neuronx.DataParallel",
                    model,
                    device_ids=device_ids,
                    dim=dim,
                    set_dynamic_batching=set_dynamic_batching,
                )

        for obj in (trace, analyze, dynamic_batch, move_trace_to_device, PartitionerConfig, DataParallel):
            setattr(m, obj.__name__, obj)
        return m

    # -- torch_neuron (archive/torch-neuron/: api-compilation-python-api.rst, api-torch-neuron-dataparallel-api.rst)
    def build_torch_neuron(self) -> ModuleType:
        from tests.recording_neuron_sdk import inf1

        return inf1.build(self)

    # -- torch_xla: what TorchServe's BaseHandler would call to move a model to an XLA device -------------------
    def build_torch_xla(self, name: str) -> ModuleType:
        sdk = self
        m = ModuleType(name)
        if name == "torch_xla.core.xla_model":

            def xla_device(*args, **kwargs):
                sdk.record("xm.xla_device", *args, **kwargs)
                raise RuntimeError("stand-in: no XLA device (infkit must keep tensors on the CPU)")

            m.xla_device = xla_device
        else:
            m.__path__ = []  # a package, so that its submodules import
        return m


class _DataParallel:
    """Documented DataParallel: dynamic batching on by default; calls run the wrapped module (inputs stay CPU)."""

    def __init__(self, sdk: RecordingNeuronSDK, name: str, module, **kwargs):
        self.sdk, self.name, self.module = sdk, name, module
        self.dynamic_batching = kwargs.get("set_dynamic_batching", True)
        sdk.record(name, module, **kwargs)

    def disable_dynamic_batching(self):
        self.dynamic_batching = False
        self.sdk.record(f"{self.name}.disable_dynamic_batching")

    def __call__(self, x):
        self.sdk.record(f"{self.name}.__call__", shape=tuple(x.shape), device=str(x.device))
        return self.module(x)
