"""Static int8 with ONNX Runtime: fp32 ONNX export -> quant_pre_process -> quantize_static (QDQ), calibrated on real
training images -> <name>.int8.onnx, run with ONNX Runtime like the onnx backend.

Which settings are fast depends on the CPU's int8 instructions (see docs/benchmarks.md): on x86 with AVX2 but no
VNNI, uint8 activations with int8 weights (U8S8, the default here) use VPMADDUBSW and are the fast choice; int8
activations (S8S8) are slower than fp32 there. With VNNI (AVX512-VNNI / AVX-VNNI) or on ARM, S8S8 is fast as well."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infkit.compile import ort_session
from infkit.compile.onnx import OnnxBackend, export_fp32
from infkit.errors import InfkitError
from infkit.utils.cpu import int8_instructions

if TYPE_CHECKING:  # serving an int8 artifact needs no torch (only compiling one does)
    import torch

log = logging.getLogger(__name__)


class OnnxInt8Backend(OnnxBackend):
    name = "onnx_int8"
    suffix = ".int8.onnx"
    static_batch = False
    #: compile() takes calibration=<(N,C,H,W) tensor of real training images>; calibration_count(options) says N
    needs_calibration = True
    option_names = OnnxBackend.option_names | {
        "calibration_images",
        "calibration_method",
        "calibration_batch_size",
        "percentile",
        "per_channel",
        "reduce_range",
        "activation_type",
        "weight_type",
    }

    def calibration_count(self, options: Mapping[str, Any]) -> int:
        """How many calibration images compile() needs; checks every quantization option first (one-line errors)."""
        from infkit.compile import calibration as calib

        return calib.settings(options).images

    def compile(
        self,
        model: torch.nn.Module,
        example: torch.Tensor,
        options: Mapping[str, Any],
        path: Path,
        calibration: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quant_pre_process,
            quantize_static,
        )

        from infkit.compile import calibration as calib

        s = calib.settings(options)
        if calibration is None or len(calibration) == 0:
            raise InfkitError(
                "compile=onnx_int8 got no calibration images; it needs real images from the training "
                "split (compile.calibration_images >= 1)"
            )
        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[s.method]
        qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
        # (not CalibMaxIntermediateOutputs: onnxruntime 1.32 drops the batches it was meant to merge)
        extra: dict[str, Any] = {"CalibPercentile": s.percentile} if s.method == "percentile" else {}
        with tempfile.TemporaryDirectory(prefix="infkit-int8-") as tmp:
            fp32, pre = Path(tmp) / "model.fp32.onnx", Path(tmp) / "model.pre.onnx"
            used = export_fp32(model, example, fp32, int(options.get("opset", 17)))
            # shape inference + graph optimisation (conv+BN folding) before, not during, quantization
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            t0 = time.perf_counter()
            log.info("calibrating int8 ranges (%s) on %d training images ...", s.method, len(calibration))
            quantize_static(
                str(pre),
                str(path),
                calib.Reader(calibration, "input", s.batch_size),
                quant_format=QuantFormat.QDQ,
                per_channel=s.per_channel,
                reduce_range=s.reduce_range,
                activation_type=qtype[s.activation_type],
                weight_type=qtype[s.weight_type],
                calibrate_method=method,
                extra_options=extra,
            )
            log.info("quantized in %.1f s", time.perf_counter() - t0)
        used |= s.record() | {
            "calibration_images": len(calibration),
            "calibration_split": calib.SPLIT,
            "quant_format": "QDQ",
            "cpu_int8_instructions": int8_instructions(),
        }
        return used | ort_session.choose_spinning(path, example, options.get("allow_spinning", "auto"))
