"""torch-neuronx (Inf2/Trn1, NeuronCore-v2): torch_neuronx.trace -> <name>.neuronx.traced.pt.

Written against the documented torch-neuronx API; the SDK is imported only when this backend is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from infkit.compile._neuron_common import NeuronSDKBackend, sdk_version

SDK = ("torch_neuronx", "neuronx", "torch-neuronx", "Inf2/Trn1; torch 2.x as paired in the Neuron release")


class NeuronxBackend(NeuronSDKBackend):
    name = "neuronx"
    suffix = ".neuronx.traced.pt"
    sdk = SDK

    def compile(self, model: torch.nn.Module, example: torch.Tensor, options: Mapping[str, Any],
                path: Path) -> dict[str, Any]:
        torch_neuronx = self._sdk()
        compiler_args = [str(a) for a in options.get("compiler_args") or []]
        traced = torch_neuronx.trace(model, example, compiler_args=compiler_args or None)
        torch.jit.save(traced, str(path))
        return {"compiler_args": compiler_args}

    def versions(self) -> dict[str, str]:
        return {"torch-neuronx": sdk_version("torch-neuronx"), "neuronx-cc": sdk_version("neuronx-cc")}
