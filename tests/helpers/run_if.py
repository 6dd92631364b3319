"""One marker for what a test needs from the machine (as lightning-hydra-template's run_if):

    @run_if(java=True)                 TorchServe's frontend is Java
    @run_if(neuron_sdk=False)          only where no Neuron SDK imports (the one-line "missing SDK" errors)
    @run_if(commands=["hey"])          a command on PATH
    @run_if(cuda=False)                only on a machine without CUDA

It skips with the reason when the machine lacks what the test needs; probing happens when the marker is built."""

from __future__ import annotations

import importlib.util
import shutil

import pytest


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def neuron_sdk_present() -> bool:
    return _has_module("torch_neuron") or _has_module("torch_neuronx")


def run_if(
    java: bool = False,
    neuron_sdk: bool | None = None,
    cuda: bool | None = None,
    commands: tuple[str, ...] | list[str] = (),
    packages: tuple[str, ...] | list[str] = (),
):
    reasons = []
    if java and shutil.which("java") is None:
        reasons.append("needs Java 11+ on PATH (TorchServe's frontend)")
    if neuron_sdk is not None and neuron_sdk_present() != neuron_sdk:
        reasons.append(
            "needs the Neuron SDK (torch-neuron or torch-neuronx)" if neuron_sdk else "a Neuron SDK is installed here"
        )
    if cuda is not None:
        import torch

        if torch.cuda.is_available() != cuda:
            reasons.append("needs CUDA" if cuda else "needs a machine without CUDA")
    reasons += [f"needs `{c}` on PATH" for c in commands if shutil.which(c) is None]
    reasons += [f"needs the Python package {p}" for p in packages if not _has_module(p)]
    return pytest.mark.skipif(bool(reasons), reason="; ".join(reasons) or "available")
