"""The in-process model benchmark on a small real timm model (no assertion on speed)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def load_cli():
    from infkit.cli import bench_model

    return bench_model


def test_bench_model_table_json_and_plot(tmp_path, capsys):
    """Random (seeded) weights: every backend but export (its C++ build runs once per session: export_compiled), int8
    calibrated on the embedded digits at this input size; no accuracy column without trained weights. The random
    network's logits are tiny and nearly tied, so whether its int8 artifact is the same function within the bound
    depends on the CPU's int8 kernels (it failed on one AMD EPYC host and passed on another): either way the verdict
    decides, and is checked end to end — failed: named, never measured, exit 1; passed: measured, exit 0."""
    cli = load_cli()
    code = cli.main(
        [
            "--model",
            "mobilenetv3_small_050",
            "--input-size",
            "3",
            "32",
            "32",
            "--batch-sizes",
            "1",
            "2",
            "--backends",
            "torchscript",
            "onnx",
            "onnx_int8",
            "neuron",
            "--calibration-images",
            "16",
            "--iterations",
            "5",
            "--max-seconds",
            "1",
            "--threads",
            "1",
            "--instance",
            "c7i.xlarge",
            "--out",
            str(tmp_path),
        ]
    )
    (run_dir,) = tmp_path.iterdir()
    result = json.loads((run_dir / "model_bench.json").read_text())
    int8_failed = "onnx_int8" in result["failed"]
    assert code == (1 if int8_failed else 0)
    measured = ("eager", "torchscript", "onnx") + (() if int8_failed else ("onnx_int8",))
    got = {(r["backend"], r["batch_size"]) for r in result["rows"]}
    assert {(b, n) for b in measured for n in (1, 2)} == got
    for r in result["rows"]:
        assert r["p50_ms"] > 0 and r["p90_ms"] >= r["p50_ms"] and r["throughput_ips"] > 0
        assert r["artifact_mib"] > 0 and r["iterations"] >= 5 and r["top1_accuracy"] is None
        assert r["speedup_vs_eager"] > 0
        assert r["cost_per_million_usd"] == pytest.approx(0.1785 / (3600 * r["throughput_ips"]) * 1e6)
    assert {r["speedup_vs_eager"] for r in result["rows"] if r["backend"] == "eager"} == {1.0}
    # the exact backends are eager's function on the 16 real images; int8 failed is named, not measured
    for b in ("torchscript", "onnx"):
        assert result["same_function"][b]["passed"] and result["same_function"][b]["images"] == 16
    if int8_failed:
        int8 = result["failed"]["onnx_int8"]
        assert not int8["passed"] and int8["reason"] and "onnx_int8" not in result["same_function"]
    else:
        int8 = result["same_function"]["onnx_int8"]
        assert int8["passed"] and int8["top1_agreement"] >= 0.9 and int8["relative_error"] <= 0.25
    assert result["calibration_images"] == 16
    if not importlib.util.find_spec("torch_neuron"):
        assert "neuron" in result["skipped"]
    assert result["machine"]["cpu_model"] and result["machine"]["versions"]["torch"]
    assert result["machine_load"]["run"]["before"]["usable_cores"] >= 1
    assert set(result["machine_load"]["by_backend"]) == set(measured)
    assert result["pricing"]["instance"] == "c7i.xlarge"
    md = (run_dir / "model_bench.md").read_text()
    assert (
        md.count("\n| ") >= 6 and "× eager" in md and "Not measured here: neuron" in md and "$ per M inferences" in md
    )
    failed_line = "FAILED, not measured: onnx_int8 is not the eager model's function"
    assert (failed_line in md) == int8_failed
    assert (run_dir / "model_bench.png").stat().st_size > 10_000
    out = capsys.readouterr()
    assert "results:" in out.out
    assert ("error: not the eager model's function, not measured: onnx_int8" in out.err) == int8_failed


def test_bench_model_from_a_checkpoint_lists_each_backend_with_accuracy(tiny_trained, tmp_path):
    """export is left out: its minutes of C++ build run once per session (export_compiled), and it is served live."""
    cli = load_cli()
    assert (
        cli.main(
            [
                "--ckpt",
                str(tiny_trained.best_ckpt),
                "--batch-sizes",
                "1",
                "4",
                "--backends",
                "torchscript",
                "onnx",
                "onnx_int8",
                "--calibration-images",
                "32",
                "--iterations",
                "3",
                "--max-seconds",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    (run_dir,) = tmp_path.iterdir()
    result = json.loads((run_dir / "model_bench.json").read_text())
    assert result["model"] == "resnet18" and result["input_size"] == [3, 32, 32]
    assert {r["backend"] for r in result["rows"]} == {"eager", "torchscript", "onnx", "onnx_int8"}
    assert result["accuracy_images"] == 270  # the whole digits test split
    acc = {r["backend"]: r["top1_accuracy"] for r in result["rows"]}
    # the exact backends classify the test split as eager does (to a tie or two); the trained model's int8 passed
    # the same-function bound, so its accuracy stays near eager's
    for backend in ("torchscript", "onnx"):
        assert abs(acc[backend] - acc["eager"]) <= 2 / 270, acc
    assert result["failed"] == {} and result["same_function"]["onnx_int8"]["top1_agreement"] >= 0.9
    assert abs(acc["onnx_int8"] - acc["eager"]) <= 0.05, acc
    md = (run_dir / "model_bench.md").read_text()
    assert "top-1 % on 270 test-split images" in md


BAD_CALIBRATION = [
    (["--calibration-method", "kl"], r"--calibration-method=kl is not one of minmax, entropy, percentile"),
    (["--calibration-images", "0"], r"--calibration-images=0 is not valid; give a whole number >= 1"),
]


def _bad_calibration_argv(flags, tmp_path):
    return ["--model", "resnet18", "--input-size", "3", "32", "32", *flags, "--out", str(tmp_path)]


@pytest.mark.parametrize(("flags", "message"), BAD_CALIBRATION)
def test_bench_model_bad_calibration_options_are_one_line(tmp_path, flags, message, call_main):
    from tests.integration.test_cli import assert_one_line_error

    assert_one_line_error(call_main(load_cli().main, *_bad_calibration_argv(flags, tmp_path), cwd=tmp_path), message)


def test_bench_model_script_as_a_user_runs_it(tmp_path):
    """src/bench_model.py in its own interpreter (the cases above call the same main() in this process)."""
    from tests.conftest import run_entry
    from tests.integration.test_cli import assert_one_line_error

    flags, message = BAD_CALIBRATION[0]
    assert_one_line_error(run_entry("bench_model.py", *_bad_calibration_argv(flags, tmp_path), cwd=tmp_path), message)
