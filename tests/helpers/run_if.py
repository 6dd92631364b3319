"""One marker for what a test needs from the machine (as lightning-hydra-template's run_if):

    @run_if(java=True)                 TorchServe as infkit starts it: Java, and nginx for the default front
    @run_if(neuron_sdk=False)          only where no Neuron SDK imports (the one-line "missing SDK" errors)
    @run_if(commands=["hey"])          a command on PATH
    @run_if(cuda=False)                only on a machine without CUDA

It skips with the reason when the machine lacks what the test needs; probing happens when the marker is built. With
CI=true nothing is skipped for a missing component: the test fails and names it (tests/conftest.py)."""

from __future__ import annotations

import importlib.util
import os
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
    reasons, missing = [], []  # missing: components the machine lacks (CI=true fails on them); reasons: situations
    if java:
        from infkit.serve.core.front import NGINX_FIX, find_nginx
        from infkit.serve.torchserve.java import JAVA_FIX, java_available

        if not java_available():
            missing.append(JAVA_FIX)
        if find_nginx() is None:
            missing.append(f"serve start's default front needs nginx: {NGINX_FIX}")
    if neuron_sdk is not None and neuron_sdk_present() != neuron_sdk:
        reasons.append(
            "needs the Neuron SDK (torch-neuron or torch-neuronx)" if neuron_sdk else "a Neuron SDK is installed here"
        )
    if cuda is not None:
        import torch

        if torch.cuda.is_available() != cuda:
            reasons.append("needs CUDA" if cuda else "needs a machine without CUDA")
    missing += [f"needs `{c}` on PATH" for c in commands if shutil.which(c) is None]
    missing += [f"needs the Python package {p}" for p in packages if not _has_module(p)]
    if missing and in_ci():
        return pytest.mark.missing_component(reason="; ".join(missing))
    reasons += missing
    return pytest.mark.skipif(bool(reasons), reason="; ".join(reasons) or "available")


def in_ci() -> bool:
    """CI=true (as CI services and .ci/run set it): a missing component fails the test instead of skipping it."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
