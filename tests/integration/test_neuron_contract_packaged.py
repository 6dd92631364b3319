"""API-contract tests through the real stages: train (tiny) -> compile=neuronx -> package (.mar, real
torch-model-archiver) -> the real handler class in the extracted model folder, as TorchServe runs it.

The Neuron SDK is the recording stand-in (tests/recording_neuron_sdk): these tests prove call shapes and the order
of environment and import, never compilation or inference on Inferentia (the "compiled" artifact is a CPU
torch.jit.trace, so its parity with the eager model says nothing about Neuron)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from infkit.compile import manifest as mf
from infkit.compile import run as compile_stage
from infkit.package import run as package_stage
from infkit.utils.compose import compose_config

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "tests/resources/digits/0_6.png"
NUM, VISIBLE = "NEURON_RT_NUM_CORES", "NEURON_RT_VISIBLE_CORES"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def packaged(tiny_trained, tmp_path_factory):
    """compile=neuronx (buckets 1 and 4, analyze on) through the stand-in, packaged for 4 workers, .mar extracted."""
    from tests.recording_neuron_sdk.importer import install

    out = tmp_path_factory.mktemp("neuronx")
    sdk, uninstall = install()
    try:
        compiled = compile_stage.run(
            compose_config(
                "trace",
                [
                    "experiment=digits_example",
                    f"ckpt_path={tiny_trained.best_ckpt}",
                    "compile=neuronx",
                    "compile.batch_sizes=[1,4]",
                    "compile.analyze=true",
                    "compile.trace_in_subprocess=false",  # the stand-in lives in this process
                    "parity.num_images=8",
                ],
                out / "compile",
            )
        )
    finally:
        uninstall()
    # 4 workers on an instance said to have 2 NeuronCores (inf2.xlarge): packaging warns, and still packages
    package = package_stage.run(
        compose_config(
            "package",
            [
                f"artifact_dir={out / 'compile'}",
                f"model_store={out / 'store'}",
                "model_name=digits_neuronx",
                "serve.model.minWorkers=4",
                "serve.model.maxWorkers=4",
                "serve.neuron.cores=2",
            ],
            out,
        )
    )
    model_dir = out / "model_dir"
    with zipfile.ZipFile(package.mar) as mar:  # what TorchServe does with a .mar before starting workers
        mar.extractall(model_dir)
    return {"calls": sdk.calls, "compiled": compiled, "package": package, "model_dir": model_dir}


def test_compile_traced_each_bucket_with_the_config_and_recorded_analyze(packaged):
    traces = [c for c in packaged["calls"] if c.name == "torch_neuronx.trace"]
    assert [tuple(c.args[1].shape) for c in traces] == [(1, 3, 32, 32), (4, 3, 32, 32)]
    assert all(c.kwargs["compiler_args"] is None and c.kwargs["partitioner_config"] is None for c in traces)
    assert len([c for c in packaged["calls"] if c.name == "torch_neuronx.analyze"]) == 1
    manifest = mf.read(packaged["model_dir"])
    assert manifest["backend"] == "neuronx" and manifest["batch_sizes"] == [1, 4]
    assert manifest["backend_options"]["analyze"]["support_percentage"] == 100.0
    assert manifest["backend_options"]["analyze"]["unsupported_operators"] == []


def test_packaging_warns_when_four_workers_exceed_the_instance_cores(packaged):
    (warning,) = packaged["package"].warnings
    assert "minWorkers=4 and maxWorkers=4 x 1 NeuronCore(s) per worker exceed serve.neuron.cores=2" in warning
    config = (packaged["model_dir"] / "model-config.yaml").read_text()
    assert "neuron_layout: per_worker" in config and "deviceType: cpu" in config


def test_four_workers_each_set_one_core_before_the_sdk_import(packaged):
    """The bar: a packaged neuron model with minWorkers 4 and no operator env: every worker process (the real
    handler file from the .mar, initialized as TorchServe does) has NEURON_RT_NUM_CORES=1 before the SDK imports."""
    env = {k: v for k, v in os.environ.items() if k not in (NUM, VISIBLE)}

    def worker(_):
        proc = subprocess.run(
            [sys.executable, "-m", "tests.recording_neuron_sdk.worker", str(packaged["model_dir"]), str(IMAGE)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(worker, range(4)))
    for report in reports:
        assert report["min_workers"] == 4
        assert report["imports"][0] == ["torch_neuronx", {NUM: "1", VISIBLE: None}]
        assert all(env[NUM] == "1" for _, env in report["imports"])
        assert "xm.xla_device" not in [name for name, _ in report["calls"]]
        assert len(report["answer"]) == 3 and all(len(a) == 5 for a in report["answer"])  # top-5 answers


def test_in_process_handler_pads_a_batch_of_three_to_the_bucket_of_four(packaged, neuron_env):
    from tests.recording_neuron_sdk.worker import main

    report = main(packaged["model_dir"], IMAGE)
    assert neuron_env[NUM] == "1" and report["imports"][0] == ("torch_neuronx", {NUM: "1", VISIBLE: None})
    assert report["answer"][0] == report["answer"][1] == report["answer"][2]
    assert not [name for name, _ in report["calls"] if "DataParallel" in name or "dynamic_batch" in name]
