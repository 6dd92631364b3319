"""What the two Neuron backends share: the lazy SDK import (one line when it is missing), operator-support analysis,
and loading an artifact per worker or with DataParallel over all visible NeuronCores."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from infkit.errors import InfkitError
from infkit.utils.quiet import torchscript_quiet

log = logging.getLogger(__name__)

PIPELINE_FLAG = "--neuroncore-pipeline-cores"


def import_sdk(module: str, backend: str, package: str, target: str) -> tuple[ModuleType | None, str | None]:
    """(module, None) when the SDK imports, else (None, one line naming what to install and the way out)."""
    try:
        return importlib.import_module(module), None
    except Exception as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, (
            f"compile={backend} needs {package} ({target}), which does not import here ({why}); "
            f"install it from the AWS Neuron pip repository in a Neuron environment (see docs/inferentia.md), "
            f"or use compile=torchscript (or compile=onnx) on this machine"
        )


def sdk_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def pipeline_cores(options: Mapping[str, Any] | None) -> int:
    """NeuronCores one copy of the model spans (0: not pipelined), from the options recorded in the manifest:
    `pipeline_cores`, else a --neuroncore-pipeline-cores in the compiler arguments."""
    options = options or {}
    if options.get("pipeline_cores"):
        return int(options["pipeline_cores"])
    args = [str(a) for a in options.get("compiler_args") or []]
    for i, arg in enumerate(args):
        if arg == PIPELINE_FLAG and i + 1 < len(args):
            return int(args[i + 1])
        if arg.startswith(PIPELINE_FLAG + "="):
            return int(arg.split("=", 1)[1])
    return 0


def summarize_analysis(result: Any) -> dict[str, Any]:
    """The manifest's record of an operator-support analysis (torch_neuronx.analyze's documented dict):
    support as a number, unsupported operators by kind and where they failed (not their call stacks)."""
    if not isinstance(result, Mapping) or "support_percentage" not in result:
        return {
            "ran": True,
            "support_percentage": None,
            "note": "the SDK logged its operator table; it returned no support_percentage",
        }
    pct = str(result["support_percentage"]).strip().rstrip("%")
    unsupported = [
        {"kind": str(op.get("kind", "?")), "failure_at": str(op.get("failureAt", "?"))}
        for op in result.get("unsupported_operators") or []
        if isinstance(op, Mapping)
    ]
    return {
        "ran": True,
        "support_percentage": float(pct),
        "supported_operators": dict(result.get("supported_operators") or {}),
        "unsupported_operators": unsupported,
    }


def stop_if_unsupported(analysis: Mapping[str, Any], fallback: bool, backend: str) -> None:
    """Compilation stops before tracing when not every operator is supported and CPU fallback is off."""
    pct = analysis.get("support_percentage")
    if pct is None or pct >= 100.0 or fallback:
        return
    kinds = ", ".join(f"{op['kind']} ({op['failure_at']})" for op in analysis["unsupported_operators"]) or "none listed"
    raise InfkitError(
        f"compile={backend}: analyze finds {pct:.2f} % of operators supported; unsupported: {kinds}. "
        "Set compile.fallback=true to run them on CPU, or change the model"
    )


class NeuronSDKBackend:
    """Shared by neuron and neuronx: static batch, lazy SDK import, TorchScript artifacts."""

    static_batch = True
    #: (module, backend name, pip package, target) for import_sdk
    sdk: tuple[str, str, str, str]

    def __init__(self):
        #: what this instance last compiled with; load() falls back to it (the compile stage's parity check)
        self._compiled_options: dict[str, Any] = {}
        #: the operator-support analysis, run once per model (not once per compiled batch size)
        self._analysis: tuple[int, dict[str, Any]] | None = None

    def _analyze_once(self, model, run) -> dict[str, Any]:
        if self._analysis is None or self._analysis[0] != id(model):
            self._analysis = (id(model), summarize_analysis(run()))
            log.info("%s analyze: %s %% of operators supported", self.name, self._analysis[1]["support_percentage"])
        return self._analysis[1]

    def _sdk(self) -> ModuleType:
        module, reason = import_sdk(*self.sdk)
        if module is None:
            raise InfkitError(reason)
        return module

    def unavailable_reason(self) -> str | None:
        return import_sdk(*self.sdk)[1]

    def load(
        self, path, threads: int | None = None, *, options: Mapping[str, Any] | None = None, data_parallel: bool = False
    ):
        """A callable on CPU tensors. `options`: the backend options recorded in the manifest (default: those of
        this instance's last compile). data_parallel: replicate over every NeuronCore this process sees."""
        options = dict(self._compiled_options if options is None else options)
        import torch

        sdk = self._sdk()  # the runtime must be imported before torch.jit.load meets Neuron ops
        if data_parallel and pipeline_cores(options) > 1:
            raise InfkitError(
                f"layout data_parallel cannot run a model pipelined over {pipeline_cores(options)} "
                "NeuronCores; use serve.neuron.layout=per_worker, or compile with "
                "compile.pipeline_cores=null"
            )
        with torchscript_quiet():
            module = torch.jit.load(str(path))
        module = self._prepare(sdk, module, options, data_parallel)

        def run(x):
            with torch.no_grad():
                return module(x)

        return run

    def _prepare(self, sdk: ModuleType, module, options: Mapping[str, Any], data_parallel: bool):
        """Backend-specific wrapping of a loaded artifact (dynamic batching, DataParallel)."""
        raise NotImplementedError
