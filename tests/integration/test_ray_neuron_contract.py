"""The Ray engine's NeuronCore contract: what each model replica asks Ray for, and what it then sees.

(a) serve_config.yaml, as `serve start serve.engine=ray` writes it for Neuron archives: each replica of a per_worker
model asks for ray_actor_options.resources.neuron_cores = its cores per worker (1 when not pipelined, the pipeline
cores when pipelined); a data_parallel model is one replica holding every NeuronCore (serve.neuron.cores).

(b) With a real Ray that offers the neuron_cores resource (`ray start --resources '{"neuron_cores": 2}'`: Ray treats
it as its Neuron accelerator even without the device), each replica, infkit's own InfkitModel built from that
serve_config.yaml, is given NEURON_RT_VISIBLE_CORES by Ray (NeuronAcceleratorManager) before infkit runs: its own
cores, disjoint between replicas. infkit keeps Ray's setting (it never sets NEURON_RT_NUM_CORES over it), and the
Neuron SDK, here the recording stand-in of tests/recording_neuron_sdk installed inside each replica, is imported
with that environment. The stand-in proves call shapes and environment, never inference on Inferentia."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import pytest
import yaml

from infkit.compile.neuron import NeuronBackend
from infkit.compile.neuronx import NeuronxBackend
from infkit.serve.core.config import free_ports
from infkit.serve.ray import config as rc
from tests.conftest import ROOT
from tests.helpers.neuron_models import model_dir
from tests.helpers.ray_processes import stop_marked
from tests.helpers.run_if import run_if

IN_PROCESS = {"trace_in_subprocess": False}  # the stand-in lives in this process
IMAGE = ROOT / "tests/resources/digits/0_6.png"
MARKER = "INFKIT_TEST_RAY_NEURON"
VISIBLE, NUM = "NEURON_RT_VISIBLE_CORES", "NEURON_RT_NUM_CORES"


def neuron_mar(tmp_path: Path, name: str, backend, options: dict, model_config: dict) -> Path:
    """A .mar of a compiled-model folder written by the real backend through the stand-in: what the Ray engine reads
    (MAR-INF/MANIFEST.json, model-config.yaml, manifest.json) and what a replica loads (artifacts, manifest)."""
    (tmp_path / name).mkdir()
    folder = model_dir(tmp_path / name, backend, options, batch_sizes=(1,))
    meta = {"model": {"modelName": name, "modelVersion": "1.0", "configFile": "model-config.yaml"}}
    mar = tmp_path / f"{name}.mar"
    with zipfile.ZipFile(mar, "w") as z:
        z.writestr("MAR-INF/MANIFEST.json", json.dumps(meta))
        z.writestr("model-config.yaml", yaml.safe_dump(model_config))
        for path in folder.iterdir():
            z.write(path, path.name)
    return mar


def per_worker_config(workers: int) -> dict:
    handler = {"threads": 1, "topk": 3, "neuron_layout": "per_worker"}
    return {"minWorkers": workers, "maxWorkers": workers, "batchSize": 1, "maxBatchDelay": 0, "handler": handler}


@pytest.fixture
def archives(neuron_sdk, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    data_parallel = {**per_worker_config(2), "handler": {"threads": 1, "topk": 3, "neuron_layout": "data_parallel"}}
    return {
        "per_worker": neuron_mar(store, "per_worker", NeuronxBackend(), IN_PROCESS, per_worker_config(2)),
        "pipelined": neuron_mar(store, "pipelined", NeuronBackend(), {"pipeline_cores": 2}, per_worker_config(2)),
        "data_parallel": neuron_mar(store, "data_parallel", NeuronxBackend(), IN_PROCESS, data_parallel),
    }


def written_config(archives: dict, state_dir: Path, settings: rc.RaySettings | None = None) -> dict:
    """serve_config.yaml as start writes it (serve.neuron.cores=2, an inf2.xlarge), read back from the file."""
    settings = settings or rc.RaySettings()
    specs = {name: rc.model_spec(name, mar, settings, neuron={"cores": 2}) for name, mar in archives.items()}
    config = rc.serve_config(specs, settings, ("127.0.0.1", 8080), 7070, None, 1 << 20, str(state_dir))
    path = rc.write_serve_config(state_dir, config)
    return yaml.safe_load(path.read_text())


def deployment_of(config: dict, model: str) -> dict:
    return next(a for a in config["applications"] if a["name"] == rc.model_app_name(model))["deployments"][0]


# -- (a) the resource request in serve_config.yaml ---------------------------------------------------------------
@pytest.mark.parametrize(
    "model, cores, replicas",
    [("per_worker", 1, 2), ("pipelined", 2, 2), ("data_parallel", 2, 1)],
)
def test_each_replica_asks_ray_for_its_neuron_cores(archives, tmp_path, model, cores, replicas):
    d = deployment_of(written_config(archives, tmp_path), model)
    assert d["ray_actor_options"]["resources"] == {"neuron_cores": cores}
    assert d["num_replicas"] == replicas and "autoscaling_config" not in d
    assert d["ray_actor_options"]["num_cpus"] == 1.0  # handler.threads


@run_if(packages=["ray"])
def test_placement_resources_are_asked_for_beside_the_neuron_cores(archives, tmp_path):
    settings = rc.RaySettings(replica_resources={"inf2_node": 1}, max_replicas_per_node=1)
    d = deployment_of(written_config(archives, tmp_path, settings), "per_worker")
    assert d["ray_actor_options"]["resources"] == {"inf2_node": 1, "neuron_cores": 1}
    assert d["max_replicas_per_node"] == 1
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(written_config(archives, tmp_path, settings))  # what Serve accepts


# -- (b) what each replica sees on a real Ray ----------------------------------------------------------------------
@pytest.fixture
def neuron_ray():
    """A private Ray on 127.0.0.1 offering 2 neuron_cores and 2 CPUs (no Neuron device: Ray takes the count given),
    stopped by its process group and the marker in its processes' environment (never `ray stop`)."""
    marker = uuid.uuid4().hex
    root = Path(tempfile.mkdtemp(prefix="rn-"))  # Ray's Unix sockets: pytest's tmp_path is too long
    (root / "token").write_text(uuid.uuid4().hex)
    (root / "token").chmod(0o600)
    ports = free_ports("127.0.0.1", ("gcs", "client", "metrics"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "NEURON_RT_"))}
    env.update(
        {
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # single-machine mode: Ray's servers on 127.0.0.1
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(root / "token"),
            "RAY_USAGE_STATS_ENABLED": "0",
            # the replicas import the stand-in (tests/) and the probe
            "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
            # the replicas unpack their archives here; SIGKILLed at the end, they cannot clean up themselves
            "TMPDIR": str(root / "tmp"),
        }
    )
    (root / "tmp").mkdir()
    cmd = [
        *(str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--disable-usage-stats"),
        *("--node-ip-address", "127.0.0.1", "--port", str(ports["gcs"]), "--include-dashboard", "false"),
        *("--num-cpus", "2", "--resources", json.dumps({"neuron_cores": 2})),
        *("--object-store-memory", str(80 * 1024 * 1024), "--temp-dir", str(root / "ray")),
        *("--min-worker-port", "0", "--max-worker-port", "0", "--dashboard-agent-listen-port", "0"),
        *("--ray-client-server-port", str(ports["client"]), "--metrics-export-port", str(ports["metrics"])),
    ]
    with open(root / "ray.log", "wb") as log:
        head = subprocess.Popen(
            cmd, env={**env, MARKER: marker}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield {"address": f"127.0.0.1:{ports['gcs']}", "env": env, "root": root, "head": head}
    finally:
        left = stop_marked([head], MARKER, marker)
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes of the test's Ray left: {[(p.pid, p.name()) for p in left]}"


def probe(ray: dict, config_path: Path, model: str) -> dict:
    """Each replica's report (tests/helpers/ray_neuron_probe.py), by replica id."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "tests.helpers.ray_neuron_probe", ray["address"], str(config_path)),
            *(rc.model_app_name(model), str(IMAGE)),
        ],
        cwd=ROOT,
        env=ray["env"],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:] + (ray["root"] / "ray.log").read_text()
    return json.loads(done.stdout.strip().splitlines()[-1])["replicas"]


@pytest.mark.slow
@run_if(packages=["ray"])
def test_ray_gives_each_replica_its_own_neuron_cores_before_the_sdk_import(archives, neuron_ray):
    state_dir = neuron_ray["root"] / "state"
    state_dir.mkdir()
    (state_dir / "counters").mkdir()
    written_config(archives, state_dir)
    config_path = state_dir / rc.SERVE_CONFIG
    t0 = time.monotonic()

    # per_worker: two replicas of one NeuronCore each, on a Ray offering two
    replicas = probe(neuron_ray, config_path, "per_worker")
    print(f"per_worker replicas: {json.dumps(replicas)}")
    assert len(replicas) == 2, replicas
    seen = sorted(r["env_before"][VISIBLE] for r in replicas.values())
    assert seen == ["0", "1"], replicas  # set by Ray before infkit ran, one core each, disjoint
    for r in replicas.values():
        assert r["accelerator_ids"] == [r["env_before"][VISIBLE]]
        assert r["env_before"][NUM] is None and r["env_now"] == r["env_before"]  # infkit kept Ray's setting
        assert r["imports"] and r["imports"][0][0] == "torch_neuronx"
        assert all(env == r["env_before"] for _, env in r["imports"]), r["imports"]  # the SDK saw Ray's cores
        assert r["status"] == 200 and len(r["answer"]) == 3, r  # loaded through the stand-in and answered

    # data_parallel: one replica holding both NeuronCores
    replicas = probe(neuron_ray, config_path, "data_parallel")
    print(f"data_parallel replica: {json.dumps(replicas)}")
    assert len(replicas) == 1, replicas
    (r,) = replicas.values()
    assert r["env_before"] == {VISIBLE: "0,1", NUM: None} and sorted(r["accelerator_ids"]) == ["0", "1"]
    assert all(env == r["env_before"] for _, env in r["imports"]) and r["status"] == 200, r
    print(f"both probes took {time.monotonic() - t0:.1f} s")
