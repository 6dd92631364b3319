"""API-contract tests against the recording stand-in of torch_neuron / torch_neuronx (call shapes, never compilation):
packaging's workers x NeuronCores check, the benchmark's DataParallel path, and that nothing outside tests imports
the stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from infkit.bench import model_bench, model_worker
from infkit.compile.neuronx import NeuronxBackend
from infkit.errors import InfkitError
from infkit.serve.core import neuron_cores
from tests.helpers.neuron_models import fresh_import, model_dir

ROOT = Path(__file__).resolve().parents[2]
NUM, VISIBLE = "NEURON_RT_NUM_CORES", "NEURON_RT_VISIBLE_CORES"
#: the stand-in lives in this process: torch_neuronx.trace runs here, not in a spawned child that would import no SDK
IN_PROCESS = {"trace_in_subprocess": False}


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
    d = model_dir(tmp_path, NeuronxBackend(), IN_PROCESS, batch_sizes=(1,))
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
