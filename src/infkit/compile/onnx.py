"""ONNX (torch.onnx.export, dynamic batch dimension), run with ONNX Runtime on any CPU or GPU.

The sessions are set up for serving: intra-op threads from the worker's thread budget, one inter-op thread, all
graph optimisations, and thread spinning only where it was measured to help (see ort_session.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infkit.compile import ort_session

if TYPE_CHECKING:  # serving an ONNX artifact needs no torch (only compiling one does)
    import torch

log = logging.getLogger(__name__)


def export_fp32(model: torch.nn.Module, example: torch.Tensor, path: Path, opset: int) -> dict[str, Any]:
    """torch.onnx.export with a dynamic batch dimension; the graph is checked by onnx.checker."""
    import onnx
    import torch

    with torch.no_grad():
        torch.onnx.export(
            model.eval(),
            (example,),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    return {"opset": opset, "dynamic_axes": {"input": [0], "logits": [0]}}


class OnnxBackend:
    name = "onnx"
    suffix = ".onnx"
    static_batch = False
    #: the model runs on ONNX Runtime's own thread pool: torch only normalises the batch and takes the top-k
    own_thread_pool = True
    #: serving needs no torch: the batch is a numpy array, ONNX Runtime runs it (infkit.serve.core.runtime)
    torch_free = True
    #: the compile.* keys this backend reads (besides backend, batch_sizes and min_top1_agreement)
    option_names = frozenset({"opset", "allow_spinning"})

    def unavailable_reason(self) -> str | None:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            return f"compile={self.name} needs onnx and onnxruntime ({exc}): pip install onnx onnxruntime"
        return None

    def load_unavailable_reason(self) -> str | None:
        """None when an artifact can be served here: that takes ONNX Runtime only (onnx is for exporting)."""
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            return f"serving a compile={self.name} artifact needs onnxruntime ({exc}): pip install onnxruntime"
        return None

    def compile(
        self, model: torch.nn.Module, example: torch.Tensor, options: Mapping[str, Any], path: Path
    ) -> dict[str, Any]:
        used = export_fp32(model, example, path, int(options.get("opset", 17)))
        return used | ort_session.choose_spinning(path, example, options.get("allow_spinning", "auto"))

    def load(self, path: Path, threads: int | None = None, spinning: bool = False):
        """`spinning`: let idle intra-op threads busy-wait for work (see ort_session.session)."""
        return ort_session.runner(ort_session.session(path, threads, spinning))

    def versions(self) -> dict[str, str]:
        import onnx
        import onnxruntime

        return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
