"""ONNX (torch.onnx.export, dynamic batch dimension), run with ONNX Runtime on any CPU or GPU."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


class OnnxBackend:
    name = "onnx"
    suffix = ".onnx"
    static_batch = False
    option_names = frozenset({"opset"})

    def unavailable_reason(self) -> str | None:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            return f"compile=onnx needs onnx and onnxruntime ({exc}): pip install onnx onnxruntime"
        return None

    def compile(self, model: torch.nn.Module, example: torch.Tensor, options: Mapping[str, Any],
                path: Path) -> dict[str, Any]:
        import onnx

        opset = int(options.get("opset", 17))
        with torch.no_grad():
            torch.onnx.export(
                model.eval(), (example,), str(path),
                input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset, dynamo=False,
            )
        onnx.checker.check_model(str(path))
        return {"opset": opset, "dynamic_axes": {"input": [0], "logits": [0]}}

    def load(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        input_name = session.get_inputs()[0].name

        def run(x: torch.Tensor) -> torch.Tensor:
            (logits,) = session.run(None, {input_name: x.detach().cpu().numpy()})
            return torch.from_numpy(logits)

        return run

    def versions(self) -> dict[str, str]:
        import onnx
        import onnxruntime

        return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
