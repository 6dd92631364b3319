"""What the two Neuron backends share: importing their SDK lazily, with a one-line answer when it is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

import torch

from infkit.errors import InfkitError
from infkit.utils.quiet import torchscript_quiet


def import_sdk(module: str, backend: str, package: str, target: str) -> tuple[ModuleType | None, str | None]:
    """(module, None) when the SDK imports, else (None, one line naming what to install and the way out)."""
    try:
        return importlib.import_module(module), None
    except Exception as exc:  # the PyPI placeholders raise ImportError; a broken SDK can raise anything
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


class NeuronSDKBackend:
    """Shared by neuron and neuronx: static batch, lazy SDK import, TorchScript artifacts."""

    static_batch = True
    #: (module, backend name, pip package, target) for import_sdk
    sdk: tuple[str, str, str, str]

    def _sdk(self) -> ModuleType:
        module, reason = import_sdk(*self.sdk)
        if module is None:
            raise InfkitError(reason)
        return module

    def unavailable_reason(self) -> str | None:
        return import_sdk(*self.sdk)[1]

    def load(self, path, threads: int | None = None):
        self._sdk()  # the runtime must be imported before torch.jit.load meets Neuron ops
        with torchscript_quiet():
            module = torch.jit.load(str(path))

        def run(x):
            with torch.no_grad():
                return module(x)

        return run
