"""API-contract tests of compile=neuron_native (TorchNeuron) against the recording stand-in (tests/recording_neuron_sdk,
native.py). They prove call shapes and the order of environment, import and compilation, never compilation or
inference on Trainium: the stand-in's "neuron" torch.compile backend records each graph and runs it eagerly on the
CPU, and "cpu" stands in for the `neuron` device this machine does not have. What they check: the one-line errors
where TorchNeuron is missing, the SDK variables set before its import, one compiled shape per batch size with the
NEFF cache packed into the artifact, the manifest options, and serving (core budget, unpacked cache, warm-up)."""

from __future__ import annotations

import tarfile

import pytest
import torch
from torch import nn

from infkit.compile import manifest as mf
from infkit.compile import neuron_native
from infkit.compile.neuron_native import NeuronNativeBackend
from infkit.compile.registry import resolve
from infkit.errors import InfkitError
from infkit.serve.core import neuron_cores
from infkit.serve.core.runtime import ServedModel
from tests.helpers.neuron_models import fresh_import

NUM, VISIBLE = "NEURON_RT_NUM_CORES", "NEURON_RT_VISIBLE_CORES"
CACHE, FALLBACK = "TORCH_NEURONX_NEFF_CACHE_DIR", "TORCH_NEURONX_DISABLE_FALLBACK_EXECUTION"
OPTIONS = {"batch_sizes": [1, 4, 8], "autocast": None, "fallback": False, "fullgraph": True}


@pytest.fixture
def native(neuron_sdk, neuron_env, monkeypatch):
    """The stand-in as TorchNeuron 2.14 with two neuron devices; "cpu" in place of the neuron device."""
    monkeypatch.setattr(neuron_native, "DEVICE", "cpu")
    for key in (CACHE, FALLBACK):
        monkeypatch.delenv(key, raising=False)
    return neuron_sdk.use_native()


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


def compiled_dir(tmp_path, options=None):
    """What the compile stage does for neuron_native: environment, import check, one compile, the manifest."""
    options = {**OPTIONS, **(options or {})}
    backend, _ = resolve("neuron_native", prepare=lambda b: b.prepare_environment(options, tmp_path))
    net = tiny_net()
    path = tmp_path / f"m{backend.suffix}"
    used = backend.compile(net, torch.randn(1, 3, 8, 8), options, path)
    mf.write(
        tmp_path,
        {
            "name": "m",
            "backend": "neuron_native",
            "artifacts": [mf.artifact_entry(path, None)],
            "batch_sizes": options["batch_sizes"],
            "input_size": [3, 8, 8],
            "mean": [0.5] * 3,
            "std": [0.5] * 3,
            "labels": ["a", "b", "c"],
            "backend_options": used,
        },
    )
    return net, backend, path, used


def compiled_shapes(sdk) -> list[int]:
    return [c.kwargs["shapes"][0][0] for c in sdk.calls_to("torch.compile backend=neuron")]


# -- where TorchNeuron is missing -----------------------------------------------------------------------------------
def test_without_torchneuron_one_line_says_what_to_install_and_where_it_runs():
    reason = NeuronNativeBackend().unavailable_reason()
    assert "\n" not in reason
    assert reason.startswith("compile=neuron_native needs TorchNeuron, which is not installed here")
    assert "torch-neuronx 2.13.3.0.* or 2.14.3.0.*" in reason and "Trn2 and Trn3 only" in reason
    assert "not on Inf2, Trn1 or Inf1" in reason and "compile=neuronx" in reason and "compile=torchscript" in reason


def test_the_xla_torch_neuronx_is_not_taken_for_torchneuron(neuron_sdk):
    neuron_sdk.distributions["torch-neuronx"] = "2.9.0.2.15.83"
    reason = NeuronNativeBackend().unavailable_reason()
    assert "torch-neuronx 2.9.0.2.15.83 here is the XLA-based line (Inf2/Trn1: use compile=neuronx)" in reason
    assert not neuron_sdk.imports  # decided from the package version, nothing imported


def test_torchneuron_without_a_neuron_device_is_refused(native):
    native.devices = 0
    reason = NeuronNativeBackend().unavailable_reason()
    assert "sees no neuron device (torch.neuron.is_available() is false)" in reason and "Trn2 and Trn3" in reason
    assert native.calls_to("torch.neuron.is_available")


def test_resolving_sets_the_cache_and_fallback_variables_before_the_sdk_import(native, tmp_path):
    resolve("neuron_native", prepare=lambda b: b.prepare_environment(OPTIONS, tmp_path))
    name, env = native.imports[0]
    assert name == "torch_neuronx"
    assert env[CACHE] == str(tmp_path / "neff_cache") and env[FALLBACK] == "1"
    assert (tmp_path / "neff_cache").is_dir()


def test_fallback_true_turns_eager_fallback_on_through_the_variable(native, tmp_path):
    resolve("neuron_native", prepare=lambda b: b.prepare_environment({**OPTIONS, "fallback": True}, tmp_path))
    assert native.imports[0][1][FALLBACK] == "0"


# -- compilation -----------------------------------------------------------------------------------------------------
def test_one_compiled_shape_per_batch_size_at_compile_time(native, tmp_path):
    *_, used = compiled_dir(tmp_path)
    assert compiled_shapes(native) == [1, 4, 8]
    assert used["compiled_batch_sizes"] == [1, 4, 8] and used["input_shape"] == [3, 8, 8]
    calls = native.calls_to("torch.compile backend=neuron")
    assert all(c.env[CACHE] == str(tmp_path / "neff_cache") for c in calls)  # every NEFF goes to the cache


def test_torch_compile_gets_the_neuron_backend_fullgraph_and_no_dynamic_shapes(native, tmp_path, monkeypatch):
    seen = []
    real = torch.compile

    def spy(model, **kwargs):
        seen.append(kwargs)
        return real(model, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    compiled_dir(tmp_path, {"fullgraph": False})
    assert seen == [{"backend": "neuron", "fullgraph": False, "dynamic": False}]


def test_the_artifact_packs_the_program_and_the_neff_cache(native, tmp_path):
    _, _, path, used = compiled_dir(tmp_path)
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
    assert "program.pt2" in names
    assert {f"neff_cache/stand-in-{bs}x3x8x8.not-a-neff" for bs in (1, 4, 8)} <= names
    assert used["neff_cache_files"] == 3 and path.name == "m.neuron_native.tar"


def test_the_compiled_model_matches_the_eager_one_and_is_not_compiled_twice(native, tmp_path):
    net, backend, path, _ = compiled_dir(tmp_path)
    run = backend.load(path)  # the compile stage's parity check: the model it just compiled
    x = torch.randn(4, 3, 8, 8)
    assert torch.allclose(run(x), net(x), atol=1e-5)
    assert compiled_shapes(native) == [1, 4, 8]  # batch 4 was compiled already


def test_bf16_autocast_is_a_knob_and_its_output_is_float32(native, tmp_path):
    net, backend, path, used = compiled_dir(tmp_path, {"autocast": "bf16"})
    x = torch.randn(4, 3, 8, 8)
    out = backend.load(path)(x)
    assert used["autocast"] == "bf16" and out.dtype == torch.float32
    assert torch.allclose(out, net(x), atol=5e-2)


@pytest.mark.parametrize("bad", ["fp16", "bfloat16", True])
def test_an_unknown_autocast_value_is_named_with_the_valid_ones(native, tmp_path, bad):
    with pytest.raises(InfkitError, match=rf"compile.autocast={bad!r} is not valid; use bf16"):
        compiled_dir(tmp_path, {"autocast": bad})
    assert not native.calls_to("torch.compile backend=neuron")


def test_a_graph_that_fails_to_compile_stops_compilation_with_fallback_off(native, tmp_path):
    native.compile_error = "neuronx-cc: unsupported operator"
    with pytest.raises(Exception, match="neuronx-cc: unsupported operator"):
        compiled_dir(tmp_path)


# -- serving ---------------------------------------------------------------------------------------------------------
def test_a_worker_sets_its_core_budget_and_the_packed_cache_before_the_sdk_import(native, tmp_path):
    compiled_dir(tmp_path)
    fresh_import(native)
    model = ServedModel.load(tmp_path, threads=1)
    name, env = native.imports[0]
    unpacked = tmp_path / "m.neuron_native.tar.d" / "neff_cache"
    assert name == "torch_neuronx" and env[NUM] == "1" and env[VISIBLE] is None
    assert env[CACHE] == str(unpacked) and env[FALLBACK] == "1"
    assert (unpacked / "stand-in-4x3x8x8.not-a-neff").is_file()
    assert sorted(model.runners) == [1, 4, 8]
    assert compiled_shapes(native) == [1, 4, 8]  # warm-up: one call per compiled shape before any request


def test_served_batches_are_padded_to_a_compiled_shape(native, tmp_path):
    net, *_ = compiled_dir(tmp_path)
    fresh_import(native)
    model = ServedModel.load(tmp_path)
    native.calls.clear()
    x = torch.randn(3, 3, 8, 8)
    assert torch.allclose(model.logits(x), net(x), atol=1e-5)
    assert not native.calls_to("torch.compile backend=neuron")  # 3 runs as 4: no new shape compiled


def test_an_operators_visible_cores_are_kept_for_a_native_worker(native, neuron_env, tmp_path):
    compiled_dir(tmp_path)
    fresh_import(native)
    neuron_env[VISIBLE] = "2-3"
    ServedModel.load(tmp_path)
    assert native.imports[0][1][VISIBLE] == "2-3" and native.imports[0][1][NUM] is None


def test_data_parallel_layout_is_refused_for_a_native_model():
    with pytest.raises(InfkitError, match="neuron_native model runs one copy per worker: use serve.neuron.layout"):
        neuron_cores.check_layout("data_parallel", {"backend": "neuron_native"})


def test_packaging_counts_native_workers_against_the_instance_cores():
    manifest = {"backend": "neuron_native", "name": "m", "backend_options": {"compiled_batch_sizes": [1]}}
    assert neuron_cores.is_neuron(manifest) and neuron_cores.cores_per_worker(manifest) == 1
    (line,) = neuron_cores.packaging_warnings(manifest, {"minWorkers": 4, "maxWorkers": 4}, 2)
    assert "minWorkers=4 and maxWorkers=4 x 1 NeuronCore(s) per worker exceed serve.neuron.cores=2" in line


def test_a_second_worker_reuses_the_unpacked_folder(native, tmp_path):
    compiled_dir(tmp_path)
    backend = NeuronNativeBackend()
    first = backend.prepare_load(tmp_path / "m.neuron_native.tar", OPTIONS, env={})
    second = backend.prepare_load(tmp_path / "m.neuron_native.tar", OPTIONS, env={})
    assert first == second == tmp_path / "m.neuron_native.tar.d"
    assert not list(tmp_path.glob(".unpack-*"))  # no half-unpacked folders left behind


def test_a_recompiled_artifact_is_unpacked_again(native, tmp_path):
    compiled_dir(tmp_path)
    backend = NeuronNativeBackend()
    folder = backend.prepare_load(tmp_path / "m.neuron_native.tar", OPTIONS, env={})
    (folder / "neff_cache" / "stale.neff").write_text("from the earlier artifact")
    compiled_dir(tmp_path, {"batch_sizes": [2]})  # a new artifact under the same name
    folder = backend.prepare_load(tmp_path / "m.neuron_native.tar", OPTIONS, env={})
    assert not (folder / "neff_cache" / "stale.neff").exists()
    assert (folder / "artifact.sha256").read_text() == mf.sha256(tmp_path / "m.neuron_native.tar")
