"""TorchScript (torch.jit.trace): runs on any CPU or GPU; one artifact takes any batch size."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infkit.utils.quiet import torchscript_quiet
from infkit.utils.timing import latencies

log = logging.getLogger(__name__)


def _median_latency(fn, example: torch.Tensor) -> float:
    with torch.inference_mode():
        return float(np.median(latencies(lambda: fn(example), warmup=3, repeats=15)))


class TorchScriptBackend:
    name = "torchscript"
    suffix = ".torchscript.pt"
    static_batch = False
    option_names = frozenset({"freeze", "optimize_for_inference"})

    def unavailable_reason(self) -> str | None:
        return None

    def compile(
        self, model: torch.nn.Module, example: torch.Tensor, options: Mapping[str, Any], path: Path
    ) -> dict[str, Any]:
        with torchscript_quiet():
            return self._compile(model.eval(), example, options, path)

    def _compile(self, model, example, options, path) -> dict[str, Any]:
        with torch.no_grad():
            module = torch.jit.trace(model, example)
        freeze = bool(options.get("freeze", True))
        if freeze:
            module = torch.jit.freeze(module)
        ofi = options.get("optimize_for_inference", "auto")
        used_ofi = False
        if ofi in (True, "true", "auto") and freeze:
            with torch.no_grad():
                optimized = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, example)))
            # what serving runs is the reloaded file: judge (and keep) only a module that survives save + load
            torch.jit.save(optimized, str(path))
            try:
                reloaded = torch.jit.load(str(path), map_location="cpu")
                reloaded(example)
            except RuntimeError as exc:
                reloaded = None
                log.info(
                    "optimize_for_inference: its module does not reload here (%s); not kept", str(exc).splitlines()[0]
                )
            if reloaded is not None and ofi == "auto":
                # keep the optimisation only where it measurably helps on this machine
                base, opt = _median_latency(module, example), _median_latency(reloaded, example)
                used_ofi = opt < 0.95 * base
                log.info(
                    "optimize_for_inference: %.2f ms -> %.2f ms per call, %s",
                    base * 1e3,
                    opt * 1e3,
                    "kept" if used_ofi else "not kept (not 5 % faster)",
                )
            else:
                used_ofi = reloaded is not None
            if used_ofi:
                return {"freeze": freeze, "optimize_for_inference": True}
        torch.jit.save(module, str(path))
        return {"freeze": freeze, "optimize_for_inference": used_ofi}

    def load(self, path: Path, threads: int | None = None):
        if threads:
            torch.set_num_threads(int(threads))
        with torchscript_quiet():
            module = torch.jit.load(str(path), map_location="cpu").eval()

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return module(x)

        return run

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__}
