"""The entry scripts as a user runs them: paths printed on success, one line and exit 2 on bad input. One run of each
script in its own interpreter; the error cases call the same main() in this process."""

import json
import re

import pytest
import torch

from infkit.cli.trace import main as trace_main
from infkit.cli.train import main as train_main
from tests.conftest import TINY_TRAIN, run_entry
from tests.helpers.run_if import run_if

pytestmark = pytest.mark.slow


def assert_one_line_error(proc, pattern):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert re.search(pattern, errors[0]), errors[0]


def test_train_then_trace_print_their_paths(tmp_path, call_main):
    proc = run_entry("train.py", *TINY_TRAIN, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    ckpt = re.search(r"best checkpoint: (\S+\.ckpt)", out).group(1)
    metrics = re.search(r"test metrics:\s+(\S+\.json)", out).group(1)
    assert json.loads(open(metrics).read())["best_ckpt"] == ckpt
    assert "logs/train/runs/" in ckpt

    proc = run_entry(
        "trace_inferentia.py",
        "experiment=digits_example",
        f"ckpt_path={ckpt}",
        "compile=onnx",
        "parity.num_images=16",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    artifact = re.search(r"artifact: (\S+\.onnx)", out).group(1)
    manifest = json.loads(open(re.search(r"manifest: (\S+manifest\.json)", out).group(1)).read())
    assert manifest["artifacts"][0]["file"] == artifact.rsplit("/", 1)[1]

    # a guard that would compare nothing stops compilation in one line; turning it off is explicit
    assert_one_line_error(
        call_main(
            trace_main,
            "experiment=digits_example",
            f"ckpt_path={ckpt}",
            "compile=onnx",
            "parity.accuracy_images=0",
            cwd=tmp_path,
        ),
        r"parity.accuracy_images=0: the check would compare nothing; give a number of images >= 1, or turn the "
        r"check off with parity.accuracy=false",
    )

    # a checkpoint of another model, or of another class count, is refused with the fix
    assert_one_line_error(
        call_main(
            trace_main,
            "experiment=digits_example",
            f"ckpt_path={ckpt}",
            "model.model_name=resnet34",
            cwd=tmp_path,
        ),
        r"holds a resnet18 with 10 classes.*model.model_name=resnet18",
    )
    folder = tmp_path / "three_classes"
    for name in ("a", "b", "c"):
        (folder / name).mkdir(parents=True)
        for i in range(4):
            from PIL import Image

            Image.new("L", (8, 8), 40 * i).save(folder / name / f"{i}.png")
    assert_one_line_error(
        call_main(
            trace_main,
            "experiment=digits_example",
            f"ckpt_path={ckpt}",
            "data=image_folder",
            f"data.root={folder}",
            "data.input_size=[3,32,32]",
            cwd=tmp_path,
        ),
        r"holds a resnet18 with 10 classes, the data config has 3 classes",
    )


def test_trace_without_ckpt_path(tmp_path, call_main):
    assert_one_line_error(call_main(trace_main, "experiment=digits_example", cwd=tmp_path), r"ckpt_path is not set")


def test_trace_with_missing_ckpt(tmp_path, call_main):
    assert_one_line_error(
        call_main(trace_main, f"ckpt_path={tmp_path}/nope.ckpt", cwd=tmp_path),
        r"ckpt_path '.*nope.ckpt' does not exist",
    )


def test_trace_with_garbage_ckpt(tmp_path, call_main):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"this is not a checkpoint")
    assert_one_line_error(call_main(trace_main, f"ckpt_path={bad}", cwd=tmp_path), r"is not a readable checkpoint")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.ckpt")
    assert_one_line_error(
        call_main(trace_main, f"ckpt_path={tmp_path / 'plain.ckpt'}", cwd=tmp_path),
        r"not a Lightning checkpoint",
    )


@pytest.mark.parametrize("main", [train_main, trace_main], ids=["train", "trace"])
def test_unknown_experiment(main, tmp_path, call_main):
    assert_one_line_error(
        call_main(main, "experiment=nope", cwd=tmp_path),
        r"unknown experiment 'nope'; choose one of: cifar10_example, digits_example",
    )


def test_unknown_backend(tmp_path, call_main):
    assert_one_line_error(
        call_main(trace_main, "compile=tensorrt", "ckpt_path=x.ckpt", cwd=tmp_path),
        r"unknown compile 'tensorrt'; choose one of: auto, export, neuron, neuron_native, neuronx, onnx, onnx_int8, "
        r"torchscript",
    )


@run_if(neuron_sdk=False)
def test_neuron_without_sdk(tmp_path, call_main):
    assert_one_line_error(
        call_main(trace_main, "compile=neuron", "ckpt_path=x.ckpt", cwd=tmp_path),
        r"compile=neuron needs torch-neuron .* use compile=torchscript",
    )


@run_if(neuron_sdk=False)
def test_neuron_native_without_torchneuron(tmp_path, call_main):
    assert_one_line_error(
        call_main(trace_main, "compile=neuron_native", "ckpt_path=x.ckpt", cwd=tmp_path),
        r"^error: compile=neuron_native needs TorchNeuron, which is not installed here: install TorchNeuron "
        r"\(torch-neuronx 2\.13\.3\.0\.\* or 2\.14\.3\.0\.\*.*it runs on Trn2 and Trn3 only, not on Inf2, Trn1 or Inf1",
    )
    assert not list(tmp_path.rglob("neff_cache"))  # nothing set up for an SDK that is not there


def test_unreadable_data_directory(tmp_path, call_main):
    assert_one_line_error(
        call_main(train_main, "data=image_folder", f"data.root={tmp_path}/missing", cwd=tmp_path),
        r"image folder '.*missing' does not exist; set data.root",
    )


def test_unknown_timm_model(tmp_path, call_main):
    assert_one_line_error(
        call_main(train_main, "model.model_name=resnet_nonesuch", cwd=tmp_path), r"unknown timm model 'resnet_nonesuch'"
    )
