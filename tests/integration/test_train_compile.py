"""A real (tiny) training run, the digits_example promise, then compilation with every backend that can run here."""

import json
import shutil

import pytest
import torch
from hydra.utils import instantiate

from infkit.compile import manifest as mf
from infkit.compile import run as compile_stage
from infkit.compile.registry import get_backend
from infkit.errors import InfkitError
from infkit.train import checkpoint
from infkit.utils.compose import compose_config
from tests.conftest import TINY_TRAIN

# exact backends that compile in seconds, written out: each must be available here (the test fails otherwise); like
# onnx_int8 (numbers change) and export (minutes of C++, test_int8_export.py) compiled once per session from the
# trained digits model; the Neuron backends only against the stand-in (test_neuron_contract_*.py)
LOCAL_BACKENDS = ["torchscript", "onnx"]


@pytest.mark.slow
def test_tiny_training_writes_checkpoint_and_metrics(tiny_trained, tmp_path):
    assert tiny_trained.best_ckpt.is_file()
    metrics = json.loads(tiny_trained.metrics_path.read_text())
    assert metrics["model_name"] == "resnet18" and metrics["best_ckpt"] == str(tiny_trained.best_ckpt)
    loaded = checkpoint.load(tiny_trained.best_ckpt)
    assert loaded.hparams["labels"] == [str(i) for i in range(10)]
    assert loaded.hparams["input_size"] == [3, 32, 32] and len(loaded.hparams["mean"]) == 3
    # test/acc is the best checkpoint's top-1 on the test batches the run was limited to (2 batches of 64)
    datamodule = instantiate(compose_config("train", TINY_TRAIN, tmp_path).data)
    datamodule.prepare()
    datamodule.set_default_normalization(loaded.hparams["mean"], loaded.hparams["std"])
    images, labels = datamodule.batch("test", 128)
    with torch.inference_mode():
        acc = float((loaded.net.eval()(images).argmax(1) == labels).float().mean())
    assert metrics["test/acc"] == pytest.approx(acc, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
def test_compile_backend_matches_eager(backend, digits_trained, request):
    """The session's compile of the trained digits model with this backend (tests/integration/conftest.py: the one
    the handler tests run and the live server serves), made with compile.batch_sizes=[1,3,8], parity.num_images=40."""
    compiled = request.getfixturevalue(f"{backend}_compiled")
    m = mf.read(compiled)
    assert m["backend"] == backend and m["model_name"] == "resnet18"
    assert m["input_size"] == [3, 32, 32] and m["labels"] == [str(i) for i in range(10)]
    assert m["num_params"] == sum(p.numel() for p in checkpoint.load(digits_trained.best_ckpt).net.parameters())
    assert torch.__version__.startswith(m["versions"]["torch"])
    mf.verify_artifacts(compiled, m)
    parity = m["parity"]
    assert parity["passed"] and parity["top1_agreement"] >= 0.99
    assert parity["max_abs_logit_diff"] < 1e-3
    assert set(parity["by_batch_size"]) == {"1", "3", "8"}
    assert parity["images"] == 40
    # test accuracy beside the eager model's, on the whole digits test split
    acc = m["accuracy"]
    assert acc["images"] == 270 and acc["passed"] and acc["top1_agreement"] >= 0.99
    assert abs(acc["compiled_top1"] - acc["eager_top1"]) <= 1 / 270

    # the artifact, loaded on its own, gives the eager logits at any batch size it was checked at
    net = checkpoint.load(digits_trained.best_ckpt).net
    fn = get_backend(backend).load(compiled / m["artifacts"][0]["file"])
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(fn(x), net(x), atol=1e-3)


@pytest.mark.slow
def test_artifact_tampering_is_caught(onnx_compiled, tmp_path):
    copy = tmp_path / "artifact"
    shutil.copytree(onnx_compiled, copy)
    m = mf.read(copy)
    mf.verify_artifacts(copy, m)  # the copy as compiled passes
    with open(copy / m["artifacts"][0]["file"], "ab") as f:
        f.write(b"\0")
    with pytest.raises(InfkitError, match="sha256"):
        mf.verify_artifacts(copy, mf.read(copy))


@pytest.mark.slow
def test_parity_threshold_fails_compilation_clearly(tiny_trained, tmp_path):
    # agreement can never exceed 100 %: a threshold above it must stop compilation with the numbers
    overrides = [
        "experiment=digits_example",
        f"ckpt_path={tiny_trained.best_ckpt}",
        "compile=torchscript",
        "compile.optimize_for_inference=false",  # the guard is the point, not the measured optimisation
        "parity.num_images=8",
        "parity.min_top1_agreement=1.01",
    ]
    with pytest.raises(InfkitError, match=r"agrees with the eager model on only 100\.0 %"):
        compile_stage.run(compose_config("trace", overrides, tmp_path))
    assert json.loads((tmp_path / "manifest.json").read_text())["parity"]["passed"] is False


@pytest.mark.slow
def test_digits_example_reaches_the_accuracy_bar(digits_trained):
    """The promise: digits_example reaches >= 95 % test accuracy (time is reported, not asserted)."""
    assert digits_trained.metrics["test/acc"] >= 0.95
    assert digits_trained.best_ckpt.is_file() and digits_trained.metrics_path.is_file()


@pytest.mark.slow
def test_torchscript_forced_optimize_for_inference_still_gives_a_loadable_artifact(tiny_trained, tmp_path):
    """optimize_for_inference can produce modules that do not reload (seen at 224x224): never ship one."""
    overrides = [
        "experiment=digits_example",
        f"ckpt_path={tiny_trained.best_ckpt}",
        "compile=torchscript",
        "compile.optimize_for_inference=true",
        "parity.num_images=16",
    ]
    result = compile_stage.run(compose_config("trace", overrides, tmp_path))
    fn = get_backend("torchscript").load(result.artifacts[0])
    assert fn(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert result.manifest["parity"]["passed"]


@pytest.mark.slow
def test_a_guard_that_would_compare_nothing_stops_compilation(tiny_trained, tmp_path):
    overrides = ["experiment=digits_example", f"ckpt_path={tiny_trained.best_ckpt}", "compile=torchscript"]
    with pytest.raises(InfkitError, match=r"parity.accuracy_images=0: the check would compare nothing.*accuracy=false"):
        compile_stage.run(compose_config("trace", [*overrides, "parity.accuracy_images=0"], tmp_path))
    assert not list(tmp_path.glob("*.pt"))  # stopped before compiling anything


@pytest.mark.slow
def test_turned_off_guards_say_not_checked_in_the_manifest_and_the_demo_table(tiny_trained, tmp_path):
    from infkit.demo import guard_cells

    overrides = [
        "experiment=digits_example",
        f"ckpt_path={tiny_trained.best_ckpt}",
        "compile=torchscript",
        "compile.optimize_for_inference=false",
        "parity.agreement=false",
        "parity.accuracy=false",
    ]
    m = compile_stage.run(compose_config("trace", overrides, tmp_path)).manifest
    assert m["parity"] == {"checked": False, "status": "not checked", "reason": "parity.agreement=false"}
    assert m["accuracy"] == {"checked": False, "status": "not checked", "reason": "parity.accuracy=false"}
    assert mf.read(tmp_path)["accuracy"]["status"] == "not checked"
    assert guard_cells(m) == ["not checked", "not checked", "not checked"]
