"""API-contract tests through the real stages with the recording stand-in (tests/recording_neuron_sdk): train (tiny)
-> compile=neuron_native (TorchNeuron) -> package (.mar) -> a worker loading the extracted model folder; and a
compile=neuronx trace that dies by a signal (aws-neuron-sdk issue #1265).

They prove call shapes and what is kept and packed, never compilation or inference on Trainium: the stand-in's
"neuron" torch.compile backend runs each graph eagerly on the CPU, with "cpu" in place of the neuron device, so the
parity recorded here says nothing about Neuron."""

from __future__ import annotations

import signal
import tarfile
import zipfile

import pytest

from infkit.compile import manifest as mf
from infkit.compile import neuron_native, neuronx_trace
from infkit.compile import run as compile_stage
from infkit.errors import InfkitError
from infkit.package import run as package_stage
from infkit.serve.core.runtime import ServedModel
from infkit.utils.compose import compose_config
from tests.helpers.neuron_models import fresh_import

pytestmark = pytest.mark.slow
CACHE = "TORCH_NEURONX_NEFF_CACHE_DIR"


@pytest.fixture
def native(neuron_sdk, neuron_env, monkeypatch):
    monkeypatch.setattr(neuron_native, "DEVICE", "cpu")
    for key in (CACHE, "TORCH_NEURONX_DISABLE_FALLBACK_EXECUTION"):
        monkeypatch.delenv(key, raising=False)
    return neuron_sdk.use_native()


def trace_cfg(ckpt, out, *overrides):
    return compose_config("trace", ["experiment=digits_example", f"ckpt_path={ckpt}", *overrides], out)


def test_native_compile_package_and_serve(native, tiny_trained, tmp_path):
    out = tmp_path / "compile"
    result = compile_stage.run(
        trace_cfg(
            tiny_trained.best_ckpt, out, "compile=neuron_native", "compile.batch_sizes=[1,4]", "parity.num_images=8"
        )
    )
    m = mf.read(result.manifest_path)
    assert m["backend"] == "neuron_native" and m["batch_sizes"] == [1, 4] and m["dynamic_batch"] is False
    assert [e["file"] for e in m["artifacts"]] == ["digits_resnet18.neuron_native.tar"]
    assert m["backend_options"]["compiled_batch_sizes"] == [1, 4] and m["backend_options"]["autocast"] is None
    assert m["parity"]["status"] == "passed" and m["parity"]["images"] == 8
    assert m["accuracy"]["status"] == "passed" and m["accuracy"]["images"] == 270
    # one compiled shape per batch size: parity and accuracy ran on those shapes only (padded), nothing new compiled
    shapes = [c.kwargs["shapes"][0] for c in native.calls_to("torch.compile backend=neuron")]
    assert shapes == [(1, 3, 32, 32), (4, 3, 32, 32)]
    assert native.imports[0][1][CACHE] == str(out / "neff_cache")

    package = package_stage.run(
        compose_config(
            "package",
            [f"artifact_dir={out}", f"model_store={tmp_path / 'store'}", "model_name=digits_native"],
            tmp_path,
        )
    )
    model_dir = tmp_path / "model_dir"
    with zipfile.ZipFile(package.mar) as mar:
        mar.extractall(model_dir)
    with tarfile.open(model_dir / "digits_resnet18.neuron_native.tar") as tar:
        assert "neff_cache/stand-in-4x3x32x32.not-a-neff" in tar.getnames()  # the cache travels in the .mar

    fresh_import(native)
    model = ServedModel.load(model_dir, threads=1)
    name, env = native.imports[0]
    assert name == "torch_neuronx" and env["NEURON_RT_NUM_CORES"] == "1"
    assert env[CACHE] == str(model_dir / "digits_resnet18.neuron_native.tar.d" / "neff_cache")
    assert sorted(model.runners) == [1, 4]


def test_a_neuronx_trace_killed_by_a_signal_keeps_the_eager_weights_and_the_log(
    neuron_sdk, tiny_trained, tmp_path, monkeypatch
):
    monkeypatch.setattr(neuronx_trace, "START_METHOD", "fork")  # the child inherits the stand-in
    neuron_sdk.trace_signal = signal.SIGSEGV
    with pytest.raises(InfkitError, match=r"died by SIGSEGV at batch size 1;.*issue #1265.*torch-neuronx==2\.8"):
        compile_stage.run(trace_cfg(tiny_trained.best_ckpt, tmp_path, "compile=neuronx", "parity.num_images=8"))
    assert (tmp_path / "digits_resnet18.eager.pt").stat().st_size > 1000
    assert (tmp_path / "digits_resnet18.neuronx.traced.pt.trace.log").is_file()
    assert not (tmp_path / "manifest.json").exists()  # nothing claims an artifact that was not written
