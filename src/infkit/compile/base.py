"""The backend interface every module in this package implements."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: serving ONNX artifacts runs without torch
    import torch


class Backend(Protocol):
    #: the name used in configs (compile=<name>), file names and reports
    name: str
    #: artifact file name ending, e.g. ".torchscript.pt"
    suffix: str
    #: True when an artifact only accepts the batch size it was compiled for
    static_batch: bool
    #: the keys of configs/compile/<name>.yaml this backend reads (besides backend and batch_sizes); any other key
    #: is an error naming these (infkit.compile.options)
    option_names: frozenset[str]

    def unavailable_reason(self) -> str | None:
        """None when this backend can compile here, else one line saying what to install."""

    def compile(
        self, model: torch.nn.Module, example: torch.Tensor, options: Mapping[str, Any], path: Path
    ) -> dict[str, Any]:
        """Compile `model` for inputs shaped like `example`, write the artifact to `path`, and return
        the options actually used (recorded in the manifest).

        A backend with `needs_calibration = True` (onnx_int8) also has `calibration_count(options) -> int`, which
        checks its options and says how many images it needs, and its compile() takes them as
        `calibration=<(N,C,H,W) tensor of real training images>`."""

    def load(self, path: Path, threads: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """A callable taking a float (N,C,H,W) tensor and returning (N,classes) logits.

        Backends that record `allow_spinning` in their options (the ONNX Runtime ones) also take `spinning: bool`
        (default False): serving passes True only where that was measured to help and the worker's cores are
        its own (infkit.serve.core.runtime)."""

    def versions(self) -> dict[str, str]:
        """Versions of the libraries this backend depends on."""
