"""The import hook of the recording Neuron SDK stand-in (tests only): a meta-path finder that builds torch_neuron,
torch_neuronx and torch_xla from the recorder when infkit imports them, recording each import with the NEURON_RT_*
environment it saw (and TORCH_NEURONX_* for TorchNeuron), and that reports the recorder's `distributions` to
importlib.metadata as installed pip packages."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import re
import sys
from pathlib import Path

import torch

from tests.recording_neuron_sdk import MODULES, RecordingNeuronSDK, native


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class _Distribution(importlib.metadata.Distribution):
    """A pip package as importlib.metadata sees it: a name and a version, nothing on disk."""

    def __init__(self, name: str, version: str):
        self._text = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"

    def read_text(self, filename):
        return self._text if filename in ("METADATA", "PKG-INFO") else None

    def locate_file(self, path):
        return Path("/nonexistent") / str(path)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, sdk: RecordingNeuronSDK):
        self.sdk = sdk

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MODULES:
            package = fullname in ("torch_xla", "torch_xla.core")
            return importlib.machinery.ModuleSpec(fullname, self, is_package=package)
        return None

    def find_distributions(self, context=None):
        wanted = getattr(context, "name", None)
        for name, version in self.sdk.distributions.items():
            if wanted is None or _normal(wanted) == _normal(name):
                yield _Distribution(name, version)

    def create_module(self, spec):
        self.sdk.imports.append((spec.name, self.sdk.env_now()))
        if spec.name == "torch_neuronx":
            return native.build(self.sdk) if self.sdk.native else self.sdk.build_torch_neuronx()
        if spec.name == "torch_neuron":
            module = self.sdk.build_torch_neuron()
            torch.neuron = module  # the real package registers the torch.neuron namespace
            return module
        return self.sdk.build_torch_xla(spec.name)

    def exec_module(self, module):
        pass


def install() -> tuple[RecordingNeuronSDK, callable]:
    """Put the stand-in's finder first on sys.meta_path; returns (recorder, uninstall)."""
    for name in MODULES:
        if name in sys.modules:
            raise RuntimeError(f"{name} is already imported: the stand-in must not shadow a real SDK")
    sdk = RecordingNeuronSDK()
    finder = _Finder(sdk)
    sys.meta_path.insert(0, finder)

    def uninstall():
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
        for name in MODULES:
            sys.modules.pop(name, None)
        if hasattr(torch, "neuron"):
            del torch.neuron
        if sdk.native:
            native.unregister()

    return sdk, uninstall
