"""Is a compiled artifact the eager model's function? The in-process benchmark measures only artifacts that are, on
real images (the calibration images; random ones without data), within these documented bounds:

- exact backends (fp32 throughout: torchscript, onnx, export): every logit within
  FP32_ATOL + FP32_RTOL x max|eager logit| of eager's (fp32 reordering is far below this; a wrong weight is not);
- the others (onnx_int8's calibrated int8; Neuron's bf16/fp16 casts): top-1 agreement with eager of at least
  LOW_MIN_TOP1 of the images, and a relative logit error ||out - eager|| / ||eager|| of at most LOW_MAX_RELATIVE (an
  all-zero output is 1.0). A random-weight model's logits are tiny and nearly tied: its int8 may well fail here,
  which is what it is — not the same function, within these bounds.

A backend that fails is reported as failed, with the figures, and never measured or averaged in."""

from __future__ import annotations

import torch

from infkit.compile import parity

EXACT = ("torchscript", "onnx", "export")
FP32_ATOL = 1e-4
FP32_RTOL = 1e-3
LOW_MIN_TOP1 = 0.9
LOW_MAX_RELATIVE = 0.25
PROBE_IMAGES = 64


def bound(backend: str) -> str:
    if backend in EXACT:
        return f"every |Δlogit| <= {FP32_ATOL:g} + {FP32_RTOL:g} x max|eager logit|"
    return f"top-1 agreement >= {LOW_MIN_TOP1:.0%} and relative logit error <= {LOW_MAX_RELATIVE:.0%}"


def check(backend: str, eager: torch.Tensor, out: torch.Tensor) -> dict:
    """The figures and the verdict: {"max_abs_logit_diff", "relative_error", "top1_agreement", "images", "bound",
    "passed", "reason"}; `reason` says which bound failed, by how much."""
    eager, out = eager.float(), out.float()
    figures = parity.compare(eager, out)
    diff, agree = figures["max_abs_logit_diff"], figures["top1_agreement"]
    rel = parity.relative_error(eager, out)
    reason = None
    if backend in EXACT:
        limit = FP32_ATOL + FP32_RTOL * float(eager.abs().max())
        if not diff <= limit:  # also NaN
            reason = f"max |Δlogit| {diff:.3g} > {limit:.3g} ({bound(backend)})"
    elif not agree >= LOW_MIN_TOP1:
        reason = f"top-1 agreement {agree:.1%} < {LOW_MIN_TOP1:.0%} (relative logit error {rel:.1%})"
    elif not rel <= LOW_MAX_RELATIVE:
        reason = f"relative logit error {rel:.1%} > {LOW_MAX_RELATIVE:.0%} (top-1 agreement {agree:.1%})"
    return {
        "images": len(eager),
        "max_abs_logit_diff": diff,
        "relative_error": rel,
        "top1_agreement": agree,
        "bound": bound(backend),
        "passed": reason is None,
        "reason": reason,
    }
