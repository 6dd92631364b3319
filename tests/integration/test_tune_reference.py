"""tune's in-process reference (latency objective): the artifact's own batch-1 p50 with every usable core, measured
in a fresh process, and the line that puts the served p50 beside it."""

import json

import pytest

from infkit.tune import reference
from infkit.utils.cpu import usable_cores

pytestmark = pytest.mark.slow


def test_the_reference_measures_the_compiled_artifact_at_batch_1(onnx_compiled):
    manifest = json.loads((onnx_compiled / "manifest.json").read_text())
    s = reference.spec(onnx_compiled)
    assert s["path"] == str(onnx_compiled / manifest["artifacts"][0]["file"]) and s["batch_sizes"] == [1]
    assert s["threads"] == usable_cores() and s["spinning"] == manifest["backend_options"]["allow_spinning"]
    ref = reference.batch1(onnx_compiled, iterations=20, max_seconds=2)
    assert ref["backend"] == "onnx" and ref["iterations"] >= 5 and 0 < ref["p50_ms"] <= ref["p90_ms"]
    line = reference.line("digits_onnx", ref["p50_ms"] + 3.0, ref)
    assert "serving adds +3.00 ms" in line and f"p50 {ref['p50_ms']:.2f} ms" in line


def test_a_reference_that_cannot_run_is_named_not_raised(onnx_compiled, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    manifest = json.loads((onnx_compiled / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps(manifest))
    (broken / manifest["artifacts"][0]["file"]).write_bytes(b"not an onnx model")
    ref = reference.batch1(broken, iterations=5, max_seconds=1)
    assert "in-process measurement failed" in ref["error"]
    assert reference.line("m", 12.0, ref).startswith("in-process reference for m: the in-process measurement failed")
