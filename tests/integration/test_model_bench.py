"""The in-process model benchmark on a small real timm model (no assertion on speed)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def load_cli():
    spec = importlib.util.spec_from_file_location("bench_model_cli", ROOT / "src/bench_model.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


def test_bench_model_table_json_and_plot(tmp_path, capsys):
    cli = load_cli()
    code = cli.main(["--model", "mobilenetv3_small_050", "--input-size", "3", "32", "32", "--batch-sizes", "1", "2",
                     "--iterations", "5", "--max-seconds", "2", "--threads", "1", "--out", str(tmp_path)])
    assert code == 0
    (run_dir,) = tmp_path.iterdir()
    result = json.loads((run_dir / "model_bench.json").read_text())
    got = {(r["backend"], r["batch_size"]) for r in result["rows"]}
    assert {("eager", 1), ("eager", 2), ("torchscript", 1), ("torchscript", 2), ("onnx", 1), ("onnx", 2)} <= got
    for r in result["rows"]:
        assert r["p50_ms"] > 0 and r["p90_ms"] >= r["p50_ms"] and r["throughput_ips"] > 0
        assert r["artifact_mib"] > 0 and r["iterations"] >= 5
    if not importlib.util.find_spec("torch_neuron"):
        assert "neuron" in result["skipped"]
    assert result["machine"]["cpu_model"] and result["machine"]["versions"]["torch"]
    md = (run_dir / "model_bench.md").read_text()
    assert md.count("\n| ") >= 6 and "Not measured here: neuron" in md
    assert (run_dir / "model_bench.png").stat().st_size > 10_000
    assert "results:" in capsys.readouterr().out


def test_bench_model_from_a_checkpoint(tiny_trained, tmp_path):
    cli = load_cli()
    assert cli.main(["--ckpt", str(tiny_trained.best_ckpt), "--batch-sizes", "1", "--backends", "onnx",
                     "--iterations", "3", "--max-seconds", "1", "--out", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.iterdir()
    result = json.loads((run_dir / "model_bench.json").read_text())
    assert result["model"] == "resnet18" and result["input_size"] == [3, 32, 32]
    assert {r["backend"] for r in result["rows"]} == {"eager", "onnx"}
