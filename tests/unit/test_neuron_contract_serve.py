"""API-contract tests of serving Neuron artifacts against a recording stand-in of torch_neuron / torch_neuronx.

They prove call shapes, never compilation or inference on Inferentia: the stand-in (tests/recording_neuron_sdk)
records how infkit calls the documented APIs and the NEURON_RT_* environment at each call and at the SDK's import.
What they check: the worker's NeuronCore budget (set before the SDK import, pipeline cores -> cores per worker, an
operator's setting never overwritten), the DataParallel layout (construction, dynamic batching, refused for
pipelined models), tensors staying on the CPU, packaging's workers x cores warning, and the benchmark's DataParallel
path. The model directories here are written by the real backends (through the stand-in) and manifest writer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from infkit.bench import model_bench, model_worker
from infkit.compile import manifest as mf
from infkit.compile.neuron import NeuronBackend
from infkit.compile.neuronx import NeuronxBackend
from infkit.errors import InfkitError
from infkit.serve import neuron_cores
from infkit.serve.runtime import ServedModel

ROOT = Path(__file__).resolve().parents[2]
NUM, VISIBLE = "NEURON_RT_NUM_CORES", "NEURON_RT_VISIBLE_CORES"


def model_dir(tmp_path: Path, backend, options: dict, batch_sizes=(1, 4), pipeline_cores=0) -> Path:
    """A compiled-model folder as the compile stage writes it (artifacts + manifest), through the stand-in."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    entries, used = [], {}
    for bs in batch_sizes:
        path = tmp_path / f"m.bs{bs}{backend.suffix}"
        used = backend.compile(net, torch.randn(bs, 3, 8, 8), options, path)
        entries.append(mf.artifact_entry(path, bs))
    if pipeline_cores:
        used["pipeline_cores"] = pipeline_cores
    mf.write(
        tmp_path,
        {
            "name": "m",
            "backend": backend.name,
            "artifacts": entries,
            "input_size": [3, 8, 8],
            "mean": [0.5] * 3,
            "std": [0.5] * 3,
            "labels": ["a", "b", "c"],
            "backend_options": used,
        },
    )
    return tmp_path


def fresh_import(sdk):
    """Forget the compile-time import, so that loading imports the SDK again (as a new worker process does)."""
    import sys

    for name in ("torch_neuron", "torch_neuronx", "torch_xla", "torch_xla.core", "torch_xla.core.xla_model"):
        sys.modules.pop(name, None)
    sdk.calls.clear()
    sdk.imports.clear()


# -- the NeuronCore budget -----------------------------------------------------------------------------------------
def test_a_worker_sets_one_core_before_the_sdk_import(neuron_sdk, neuron_env, tmp_path, caplog):
    d = model_dir(tmp_path, NeuronxBackend(), {})
    fresh_import(neuron_sdk)
    caplog.set_level("INFO")
    ServedModel.load(d, threads=1)
    name, env = neuron_sdk.imports[0]
    assert name == "torch_neuronx"
    assert all(env[NUM] == "1" for _, env in neuron_sdk.imports)  # every SDK module saw the budget at import
    assert env[VISIBLE] is None and neuron_env[NUM] == "1"
    assert "NEURON_RT_NUM_CORES=1 set for this worker" in caplog.text and "not pipelined" in caplog.text


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"pipeline_cores": 8}, 8),
        ({"compiler_args": ["--neuroncore-pipeline-cores", "4"]}, 4),
        ({"compiler_args": ["--neuroncore-pipeline-cores=12"]}, 12),
        ({"pipeline_cores": 0, "compiler_args": []}, 1),
        ({}, 1),
    ],
)
def test_pipeline_cores_in_the_manifest_become_the_cores_per_worker(neuron_env, options, expected):
    manifest = {"backend": "neuron", "name": "m", "backend_options": options}
    assert neuron_cores.cores_per_worker(manifest) == expected
    neuron_cores.set_core_budget(manifest)
    assert neuron_env[NUM] == str(expected)


def test_a_pipelined_torch_neuron_model_asks_for_its_pipeline_cores_before_import(neuron_sdk, neuron_env, tmp_path):
    d = model_dir(tmp_path, NeuronBackend(), {"pipeline_cores": 4}, batch_sizes=(1,))
    fresh_import(neuron_sdk)
    ServedModel.load(d)
    assert neuron_sdk.imports[0] == ("torch_neuron", {NUM: "4", VISIBLE: None})


@pytest.mark.parametrize("operator", [{NUM: "2"}, {VISIBLE: "0-1"}, {NUM: "3", VISIBLE: "4"}])
def test_an_operators_setting_is_never_overwritten_and_the_log_says_so(
    neuron_sdk, neuron_env, tmp_path, caplog, operator
):
    d = model_dir(tmp_path, NeuronxBackend(), {})
    fresh_import(neuron_sdk)
    neuron_env.update(operator)
    caplog.set_level("INFO")
    ServedModel.load(d)
    seen = neuron_sdk.imports[-1][1]
    assert seen == {NUM: operator.get(NUM), VISIBLE: operator.get(VISIBLE)}
    assert "set by the operator: kept" in caplog.text
    assert (VISIBLE if VISIBLE in operator else NUM) in caplog.text.split("set by the operator")[0]


def test_too_few_operator_cores_for_a_pipelined_model_is_warned(neuron_env, caplog):
    neuron_env[NUM] = "1"
    neuron_cores.set_core_budget({"backend": "neuron", "backend_options": {"pipeline_cores": 4}})
    assert "fewer than the 4 pipeline cores" in caplog.text


# -- layouts -------------------------------------------------------------------------------------------------------
def test_data_parallel_wraps_the_smallest_artifact_over_all_visible_cores(neuron_sdk, neuron_env, tmp_path):
    d = model_dir(tmp_path, NeuronxBackend(), {})
    fresh_import(neuron_sdk)
    model = ServedModel.load(d, neuron_layout="data_parallel")
    assert NUM not in neuron_env  # one worker takes every core it sees
    (made,) = neuron_sdk.calls_to("torch_neuronx.DataParallel")
    assert made.kwargs == {"device_ids": None, "dim": 0, "set_dynamic_batching": True}
    assert list(model.runners) == [None]  # dynamic batching: one callable for any batch size
    assert model.logits(torch.randn(3, 3, 8, 8)).shape == (3, 3)
    (call,) = neuron_sdk.calls_to("torch_neuronx.DataParallel.__call__")
    assert call.kwargs == {"shape": (3, 3, 8, 8), "device": "cpu"}


def test_torch_neuron_data_parallel_is_built_with_its_own_signature(neuron_sdk, neuron_env, tmp_path):
    d = model_dir(tmp_path, NeuronBackend(), {"pipeline_cores": None}, batch_sizes=(1,))
    fresh_import(neuron_sdk)
    ServedModel.load(d, neuron_layout="data_parallel").logits(torch.randn(2, 3, 8, 8))
    (made,) = neuron_sdk.calls_to("torch.neuron.DataParallel")
    assert made.kwargs == {"device_ids": None, "dim": 0}  # dynamic batching is its default; never disabled
    assert not neuron_sdk.calls_to("torch.neuron.DataParallel.disable_dynamic_batching")


def test_data_parallel_refuses_a_pipelined_model_before_loading(neuron_sdk, neuron_env, tmp_path):
    d = model_dir(tmp_path, NeuronBackend(), {"pipeline_cores": 4}, batch_sizes=(1,))
    fresh_import(neuron_sdk)
    with pytest.raises(InfkitError, match="data_parallel cannot serve 'm': it is pipelined over 4 NeuronCores"):
        ServedModel.load(d, neuron_layout="data_parallel")
    assert not neuron_sdk.imports and NUM not in neuron_env


def test_an_unknown_layout_names_the_valid_ones():
    with pytest.raises(InfkitError, match="layout='pipeline' is not valid; use per_worker or data_parallel"):
        neuron_cores.check_layout("pipeline", {"backend": "neuronx"})


def test_per_worker_buckets_stay_on_the_cpu_and_xla_is_never_asked_for_a_device(neuron_sdk, neuron_env, tmp_path):
    d = model_dir(tmp_path, NeuronxBackend(), {})
    fresh_import(neuron_sdk)
    model = ServedModel.load(d)
    import torch_xla.core.xla_model  # noqa: F401  (imported with torch-neuronx, as on Inf2)

    assert sorted(model.runners) == [1, 4]
    assert model.logits(torch.randn(3, 3, 8, 8)).device.type == "cpu"
    assert not neuron_sdk.calls_to("xm.xla_device")
    assert not neuron_sdk.calls_to("torch_neuronx.dynamic_batch")  # buckets, not dynamic batching


def test_the_handler_does_not_use_torchserves_base_handler():
    source = (ROOT / "handlers/infkit_handler.py").read_text()
    assert "BaseHandler" not in source.replace("Deliberately not TorchServe's BaseHandler", "")
    assert "xla_device" not in source.replace("xm.xla_device()", "") and ".to(" not in source


def test_no_neuron_device_type_advice_remains():
    """TorchServe's deviceType is cpu or gpu; nothing in the docs or configs may suggest deviceType neuron."""
    import re

    files = [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "configs").rglob("*.yaml"),
        *(ROOT / "handlers").glob("*.yaml"),
    ]
    for path in files:
        assert not re.search(r"deviceType\W{1,4}neuron", path.read_text()), path


# -- packaging's check ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "workers, pipeline, cores, warned",
    [(4, 0, 4, False), (4, 0, 2, True), (2, 0, 2, False), (3, 4, 12, False), (4, 4, 12, True)],
)
def test_packaging_warns_when_workers_times_cores_exceed_the_instance(workers, pipeline, cores, warned):
    manifest = {"backend": "neuron", "name": "m", "backend_options": {"pipeline_cores": pipeline}}
    config = {"minWorkers": workers, "maxWorkers": workers, "handler": {"neuron_layout": "per_worker"}}
    out = neuron_cores.packaging_warnings(manifest, config, cores)
    assert bool(out) == warned
    if warned:
        assert f"minWorkers={workers} and maxWorkers={workers} x {max(1, pipeline)} NeuronCore(s)" in out[0]
        assert f"serve.neuron.cores={cores}" in out[0]


def test_packaging_without_instance_cores_says_it_did_not_check():
    out = neuron_cores.packaging_warnings({"backend": "neuronx"}, {"minWorkers": 4}, None)
    assert "serve.neuron.cores is not set" in out[0]


def test_packaging_data_parallel_with_several_workers_is_warned_and_pipelined_refused():
    config = {"minWorkers": 2, "maxWorkers": 2, "handler": {"neuron_layout": "data_parallel"}}
    out = neuron_cores.packaging_warnings({"backend": "neuronx"}, config, 2)
    assert "second worker cannot load" in out[0]
    with pytest.raises(InfkitError, match="pipelined over 4"):
        neuron_cores.packaging_warnings({"backend": "neuron", "backend_options": {"pipeline_cores": 4}}, config, 8)


# -- the benchmark's DataParallel path -----------------------------------------------------------------------------
def test_bench_worker_measures_data_parallel_through_the_sdk(neuron_sdk, neuron_env, tmp_path):
    d = model_dir(tmp_path, NeuronxBackend(), {}, batch_sizes=(1,))
    fresh_import(neuron_sdk)
    spec = {
        "backend": "neuronx",
        "path": str(d / "m.bs1.neuronx.traced.pt"),
        "input_size": [3, 8, 8],
        "batch_sizes": [1, 4],
        "threads": 1,
        "warmup": 1,
        "iterations": 5,
        "max_seconds": 1.0,
        "data_parallel": True,
    }
    result = model_worker.main(spec)
    assert [r["batch_size"] for r in result["results"]] == [1, 4]
    assert len(neuron_sdk.calls_to("torch_neuronx.DataParallel")) == 1
    shapes = {c.kwargs["shape"][0] for c in neuron_sdk.calls_to("torch_neuronx.DataParallel.__call__")}
    assert shapes == {1, 4}


def test_bench_data_parallel_without_a_neuron_sdk_is_one_clear_error():
    with pytest.raises(InfkitError, match="--data-parallel .* neither neuron nor neuronx imports here"):
        model_bench.check_data_parallel(["torchscript", "neuron", "neuronx"])


def test_bench_data_parallel_compiles_torch_neuron_unpipelined(neuron_sdk, tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3)).eval()
    model_bench.compile_all(net, [3, 8, 8], [1], tmp_path, ["neuron"], echo=lambda s: None, data_parallel=True)
    (call,) = neuron_sdk.calls_to("torch.neuron.trace")
    assert "--neuroncore-pipeline-cores" not in call.kwargs["compiler_args"]


# -- the stand-in stays inside tests -------------------------------------------------------------------------------
def test_nothing_outside_tests_imports_the_stand_in():
    for folder in ("src", "handlers", "docker", "k8s", "scripts"):
        for path in (ROOT / folder).rglob("*.py") if (ROOT / folder).is_dir() else []:
            assert "recording_neuron_sdk" not in path.read_text(), path
