"""What makes compile=export fast on CPU, checked in the built .pt2 of the trained digits model: batch norm folded
into the convolutions (freezing took effect) and no oneDNN prepacked convolutions (with a dynamic batch they reorder
every weight on every call). Shares the session's export_compiled build."""

from __future__ import annotations

import zipfile

import pytest

from infkit.compile import manifest as mf

pytestmark = pytest.mark.slow


def _generated_cpp(pt2) -> str:
    with zipfile.ZipFile(pt2) as z:
        return "".join(z.read(n).decode(errors="replace") for n in z.namelist() if n.endswith(".cpp"))


def test_the_artifact_is_frozen_without_prepacked_weights(export_compiled):
    options = mf.read(export_compiled.manifest_path)["backend_options"]
    assert options["freezing"] is True and options["weight_prepack"] is False
    code = _generated_cpp(export_compiled.artifacts[0])
    assert "aoti_torch_cpu_convolution" in code
    assert "batch_norm" not in code, "batch norm still computed at run time: freezing did not take effect"
    assert "mkldnn" not in code, "oneDNN prepacked convolutions: weights would be reordered on every call"
