"""torch.export + AOTInductor: the network is exported with a dynamic batch dimension, compiled ahead of time to a
shared library by a C++ compiler, and packaged as <name>.pt2 (aoti_compile_and_package); serving loads it with
aoti_load_package.

Speed on CPU depends on two things (see configs/compile/export.yaml):
- freezing (weights as constants: batch norm folded into the convolutions, fewer kernels) happens only when Inductor
  compiles with autograd off; with it on, freezing is skipped without a word. Export and compile run under no_grad.
- oneDNN weight prepacking (`cpp.weight_prepack`) is off by default: with a dynamic batch dimension the packed
  layout cannot be chosen ahead of time, so every call reorders every convolution's weights, which costs far more
  than the convolutions at small batch sizes. Without it the frozen convolutions run as ATen convolutions.

torch marks `torch._inductor.aoti_*` as prototype: tests/integration/test_int8_export.py pins what
infkit relies on.

The .pt2 holds machine code for the compiling CPU's vector instructions and the compiling torch version's ABI:
compile on the kind of machine (and with the torch) that serves it."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from infkit.errors import InfkitError

log = logging.getLogger(__name__)


def _compiler() -> str:
    """The C++ compiler AOTInductor will use: $CXX, else g++ (torch's own default on Linux)."""
    return os.environ.get("CXX") or "g++"


def _whole(options: Mapping[str, Any], key: str, default: int) -> int:
    raw = options.get(key, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if value < 2:
        raise InfkitError(f"compile.{key}={raw!r} is not valid; give a whole number >= 2, e.g. compile.{key}={default}")
    return value


def _flag(options: Mapping[str, Any], key: str, default: bool) -> bool:
    raw = options.get(key, default)
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise InfkitError(
        f"compile.{key}={raw!r} is not valid; give true or false, e.g. compile.{key}={str(default).lower()}"
    )


def inductor_configs(options: Mapping[str, Any]) -> dict[str, Any]:
    """The Inductor settings the artifact is built with, from the compile options."""
    return {
        "freezing": _flag(options, "freezing", True),
        "cpp.weight_prepack": _flag(options, "weight_prepack", False),
        "cpp.cxx": (None, _compiler()),
    }


def _first_line(exc: Exception) -> str:
    """The first line of an error (compiler and loader errors run to pages), or its type when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class ExportBackend:
    name = "export"
    suffix = ".pt2"
    static_batch = False
    option_names = frozenset({"max_batch_size", "freezing", "weight_prepack"})

    def unavailable_reason(self) -> str | None:
        try:
            from torch._inductor import aoti_compile_and_package, aoti_load_package  # noqa: F401
        except ImportError as exc:
            return (
                f"compile=export needs torch >= 2.6 with AOTInductor ({exc}); use compile=onnx or compile=torchscript"
            )
        compiler = _compiler()
        if shutil.which(compiler) is None:
            return (
                f"compile=export needs a C++ compiler for AOTInductor and {compiler!r} is not on PATH; install one "
                "(e.g. apt-get install g++) or set CXX to it, or use compile=onnx or compile=torchscript here"
            )
        return None

    def compile(
        self, model: torch.nn.Module, example: torch.Tensor, options: Mapping[str, Any], path: Path
    ) -> dict[str, Any]:
        from torch._inductor import aoti_compile_and_package

        reason = self.unavailable_reason()
        if reason:
            raise InfkitError(reason)
        max_batch = _whole(options, "max_batch_size", 1024)
        configs = inductor_configs(options)
        # export traces with 2 images: a batch of 1 would be specialised to the constant 1
        traced_with = example[:1].expand(2, *example.shape[1:]).contiguous() if len(example) < 2 else example
        batch = torch.export.Dim("batch", min=1, max=max_batch)
        with torch.no_grad():
            program = torch.export.export(model.eval(), (traced_with,), dynamic_shapes=({0: batch},), strict=False)
        log.info("AOTInductor: compiling %s with %s (a minute or more) ...", path.name, _compiler())
        try:
            # autograd off here too: Inductor freezes (folds batch norm, weights as constants) only a graph that
            # needs no gradients, and skips freezing without a word otherwise
            with torch.no_grad():
                aoti_compile_and_package(program, package_path=str(path), inductor_configs=configs)
        except Exception as exc:
            raise InfkitError(
                f"AOTInductor could not build {path.name} with {_compiler()!r} ({_first_line(exc)}); check the C++ "
                "toolchain (g++ with OpenMP), or use compile=onnx or compile=torchscript"
            ) from None
        return {
            "dynamic_batch": {"min": 1, "max": max_batch},
            "freezing": configs["freezing"],
            "weight_prepack": configs["cpp.weight_prepack"],
            "compiler": _compiler(),
            "api": "torch.export.export + torch._inductor.aoti_compile_and_package (prototype)",
        }

    def load(self, path: Path, threads: int | None = None):
        """The packaged model; `threads` sets torch's intra-op (OpenMP) threads, which the compiled kernels use."""
        from torch._inductor import aoti_load_package

        if threads:
            torch.set_num_threads(int(threads))
        try:
            compiled = aoti_load_package(str(path))
        except Exception as exc:
            raise InfkitError(
                f"{Path(path).name} does not load with torch {torch.__version__} ({_first_line(exc)}); an "
                "AOTInductor package runs only with the torch that compiled it: compile again here"
            ) from None

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return compiled(x.contiguous())

        return run

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__}
