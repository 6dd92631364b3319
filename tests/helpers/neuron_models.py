"""Compiled-model folders for the Neuron contract tests, written by the real backends through the recording stand-in
(tests/recording_neuron_sdk) and the real manifest writer."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from infkit.compile import manifest as mf


def model_dir(tmp_path: Path, backend, options: dict, batch_sizes=(1, 4), pipeline_cores=0) -> Path:
    """A compiled-model folder as the compile stage writes it (artifacts + manifest), through the stand-in."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    entries, used = [], {}
    for bs in batch_sizes:
        path = tmp_path / f"m.bs{bs}{backend.suffix}"
        used = backend.compile(net, torch.randn(bs, 3, 8, 8), options, path)
        entries.append(mf.artifact_entry(path, bs))
    if pipeline_cores:
        used["pipeline_cores"] = pipeline_cores
    mf.write(
        tmp_path,
        {
            "name": "m",
            "backend": backend.name,
            "artifacts": entries,
            "input_size": [3, 8, 8],
            "mean": [0.5] * 3,
            "std": [0.5] * 3,
            "labels": ["a", "b", "c"],
            "backend_options": used,
        },
    )
    return tmp_path


def fresh_import(sdk):
    """Forget the compile-time import, so that loading imports the SDK again (as a new worker process does)."""
    import sys

    for name in ("torch_neuron", "torch_neuronx", "torch_xla", "torch_xla.core", "torch_xla.core.xla_model"):
        sys.modules.pop(name, None)
    sdk.calls.clear()
    sdk.imports.clear()
