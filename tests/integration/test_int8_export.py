"""compile=onnx_int8 and compile=export on the trained digits model: parity, accuracy in the manifest, and what
infkit relies on in torch's prototype AOTInductor API (.pt2 layout, loading in a fresh process, dynamic batch)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest
import torch

from infkit.cli.trace import main as trace_main
from infkit.compile import manifest as mf
from infkit.compile.registry import get_backend
from infkit.train import checkpoint
from tests.integration.test_cli import assert_one_line_error

pytestmark = pytest.mark.slow


def test_int8_passes_parity_and_records_accuracy(int8_compiled, digits_trained):
    m = mf.read(int8_compiled.manifest_path)
    assert m["backend"] == "onnx_int8" and int8_compiled.artifacts[0].name.endswith(".int8.onnx")
    mf.verify_artifacts(int8_compiled.manifest_path.parent, m)
    par, acc = m["parity"], m["accuracy"]
    assert par["passed"] and par["min_top1_agreement"] == 0.97 and set(par["by_batch_size"]) == {"1", "3", "8"}
    assert par["max_abs_logit_diff"] > 0  # int8 really changes the numbers
    # the whole digits test split (270 images), compiled beside eager, within the guard
    assert acc["split"] == "test" and acc["images"] == 270 and acc["passed"] and acc["drop"] <= acc["max_drop"]
    assert acc["eager_top1"] == pytest.approx(digits_trained.metrics["test/acc"], abs=1e-6)
    opts = m["backend_options"]
    assert opts["calibration_split"] == "train" and opts["calibration_images"] == 256
    assert (opts["calibration_method"], opts["activation_type"], opts["weight_type"]) == ("minmax", "uint8", "int8")
    assert opts["quant_format"] == "QDQ" and opts["cpu_int8_instructions"]
    assert isinstance(opts["allow_spinning"], bool)
    assert opts["spinning_choice"] in ("measured", "one intra-op thread: nothing to spin")
    import onnx

    graph = onnx.load(str(int8_compiled.artifacts[0])).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    # int8 weights: about a quarter of the fp32 file (42.6 MB for this resnet18)
    assert int8_compiled.artifacts[0].stat().st_size < 0.35 * 44.7e6


def test_export_matches_eager_at_any_batch_size(export_compiled, digits_trained):
    m = mf.read(export_compiled.manifest_path)
    assert m["backend"] == "export" and export_compiled.artifacts[0].suffix == ".pt2"
    par, acc = m["parity"], m["accuracy"]
    assert par["passed"] and par["max_abs_logit_diff"] < 1e-3 and set(par["by_batch_size"]) == {"1", "3", "8"}
    assert acc["images"] == 270 and acc["compiled_top1"] == acc["eager_top1"] and acc["top1_agreement"] == 1
    assert m["backend_options"]["dynamic_batch"] == {"min": 1, "max": 1024}

    net = checkpoint.load(digits_trained.best_ckpt).net
    fn = get_backend("export").load(export_compiled.artifacts[0], threads=1)
    for n in (1, 5, 17):  # 5 and 17 were never seen at export or parity time
        x = torch.randn(n, 3, 32, 32)
        with torch.inference_mode():
            assert torch.allclose(fn(x), net(x), atol=1e-3)


def test_pt2_layout_and_loading_in_a_fresh_process(export_compiled, tmp_path):
    """Pins the prototype API: aoti_compile_and_package writes a zip with the AOTInductor model inside, and
    aoti_load_package in another process returns a callable giving one tensor for a batch it never saw."""
    with zipfile.ZipFile(export_compiled.artifacts[0]) as z:
        names = z.namelist()
    assert any("/data/aotinductor/" in n and n.endswith(".so") for n in names), names
    x = torch.randn(6, 3, 32, 32)
    torch.save(x, tmp_path / "x.pt")
    code = (
        "import sys, torch; from torch._inductor import aoti_load_package; "
        "m = aoti_load_package(sys.argv[1]); y = m(torch.load(sys.argv[2])); "
        "assert isinstance(y, torch.Tensor), type(y); torch.save(y, sys.argv[3])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(export_compiled.artifacts[0]), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    y = torch.load(tmp_path / "y.pt")
    assert y.shape == (6, 10)
    assert torch.allclose(y, get_backend("export").load(export_compiled.artifacts[0])(x), atol=1e-5)


def test_bad_calibration_options_stop_compilation_in_one_line(tiny_trained, tmp_path, call_main):
    base = ["experiment=digits_example", f"ckpt_path={tiny_trained.best_ckpt}", "compile=onnx_int8"]
    assert_one_line_error(
        call_main(trace_main, *base, "compile.calibration_method=kl", cwd=tmp_path),
        r"compile.calibration_method=kl is not one of minmax, entropy, percentile",
    )
    assert_one_line_error(
        call_main(trace_main, *base, "compile.calibration_images=0", cwd=tmp_path),
        r"compile.calibration_images=0 is not valid; give a whole number >= 1",
    )


def test_missing_compiler_stops_compile_export_in_one_line(tiny_trained, tmp_path, monkeypatch, call_main):
    monkeypatch.setenv("CXX", "no-such-compiler++")
    assert_one_line_error(
        call_main(
            trace_main,
            "experiment=digits_example",
            f"ckpt_path={tiny_trained.best_ckpt}",
            "compile=export",
            cwd=tmp_path,
        ),
        r"compile=export needs a C\+\+ compiler .*'no-such-compiler\+\+' is not on PATH",
    )


def test_accuracy_guard_fails_compilation_clearly(tiny_trained, tmp_path):
    # a drop can never be below -100 points: this limit must stop compilation with the numbers, manifest written
    from infkit.compile import run as compile_stage
    from infkit.errors import InfkitError
    from infkit.utils.compose import compose_config

    overrides = [
        "experiment=digits_example",
        f"ckpt_path={tiny_trained.best_ckpt}",
        "compile=torchscript",
        "compile.optimize_for_inference=false",  # the guard is the point, not the measured optimisation
        "parity.num_images=8",
        "parity.accuracy_images=20",
        "parity.max_accuracy_drop=-1.01",
    ]
    with pytest.raises(
        InfkitError,
        match=r"torchscript artifact loses 0\.00 points of test accuracy .* on 20 test "
        r"images; limit -101\.00 points",
    ):
        compile_stage.run(compose_config("trace", overrides, tmp_path))
    acc = json.loads((tmp_path / "manifest.json").read_text())["accuracy"]
    assert acc["passed"] is False and acc["images"] == 20 and acc["drop"] == 0
