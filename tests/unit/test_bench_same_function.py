"""The in-process benchmark's same-function bound: an all-zero int8 output, permuted classes or an fp32 artifact off
by a visible amount fail; fp32 reordering noise and int8-sized noise pass. Real logits of a real (seeded) network."""

from __future__ import annotations

import pytest
import torch

from infkit.bench import same_function
from infkit.model import create_network


@pytest.fixture(scope="module")
def logits() -> torch.Tensor:
    torch.manual_seed(0)
    net = create_network("resnet18", 10, 3).eval()
    with torch.inference_mode():
        out = net(torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    return out * 100  # logits of a trained model's size: well separated classes


def test_an_all_zero_output_fails_for_every_backend(logits):
    zeros = torch.zeros_like(logits)
    for backend in ("onnx", "onnx_int8", "neuronx"):
        check = same_function.check(backend, logits, zeros)
        assert not check["passed"] and check["relative_error"] == pytest.approx(1.0), check
    assert "top-1 agreement" in same_function.check("onnx_int8", logits, zeros)["reason"]


def test_int8_sized_noise_passes_and_another_function_fails(logits):
    scale = logits.norm() / logits.numel() ** 0.5
    noisy = logits + 0.03 * scale * torch.randn(logits.shape, generator=torch.Generator().manual_seed(2))
    ok = same_function.check("onnx_int8", logits, noisy)
    assert ok["passed"] and ok["relative_error"] < 0.05 and ok["top1_agreement"] >= 0.9
    # the same logits shifted one class along: every prediction moves
    shifted = same_function.check("onnx_int8", logits, logits.roll(1, dims=1))
    assert not shifted["passed"] and shifted["top1_agreement"] < 0.5
    # agreement kept but the logits off by half their size: the error bound catches it
    halved = same_function.check("onnx_int8", logits, logits * 0.5)
    assert halved["top1_agreement"] == 1.0 and not halved["passed"] and "relative logit error 50.0%" in halved["reason"]


def test_fp32_backends_must_match_closely(logits):
    limit = same_function.FP32_ATOL + same_function.FP32_RTOL * float(logits.abs().max())
    assert same_function.check("onnx", logits, logits + limit / 2)["passed"]
    off = same_function.check("export", logits, logits + limit * 2)
    assert not off["passed"] and off["reason"].startswith("max |Δlogit|") and "max|eager logit|" in off["bound"]
    assert not same_function.check("torchscript", logits, logits * float("nan"))["passed"]
