"""API-contract tests of serving Neuron artifacts against a recording stand-in of torch_neuron / torch_neuronx.

They prove call shapes, never compilation or inference on Inferentia: the stand-in (tests/recording_neuron_sdk)
records how infkit calls the documented APIs and the NEURON_RT_* environment at each call and at the SDK's import.
What they check: the worker's NeuronCore budget (set before the SDK import, pipeline cores -> cores per worker, an
operator's setting never overwritten), the DataParallel layout (construction, dynamic batching, refused for
pipelined models) and tensors staying on the CPU; packaging's check and the benchmark's DataParallel path are in
test_neuron_contract_package_bench.py. The model folders are written by the real backends (through the stand-in)
and the real manifest writer (tests/helpers/neuron_models.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from infkit.compile.neuron import NeuronBackend
from infkit.compile.neuronx import NeuronxBackend
from infkit.errors import InfkitError
from infkit.serve.core import neuron_cores
from infkit.serve.core.runtime import ServedModel
from tests.helpers.neuron_models import fresh_import, model_dir

ROOT = Path(__file__).resolve().parents[2]
NUM, VISIBLE = "NEURON_RT_NUM_CORES", "NEURON_RT_VISIBLE_CORES"
#: the stand-in lives in this process: torch_neuronx.trace runs here, not in a spawned child that would import no SDK
IN_PROCESS = {"trace_in_subprocess": False}


# -- the NeuronCore budget -----------------------------------------------------------------------------------------
def test_a_worker_sets_one_core_before_the_sdk_import(neuron_sdk, neuron_env, tmp_path, caplog):
    d = model_dir(tmp_path, NeuronxBackend(), IN_PROCESS)
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
    d = model_dir(tmp_path, NeuronxBackend(), IN_PROCESS)
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
    d = model_dir(tmp_path, NeuronxBackend(), IN_PROCESS)
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
    d = model_dir(tmp_path, NeuronxBackend(), IN_PROCESS)
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
