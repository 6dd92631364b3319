"""The Ray engine on an existing cluster of two nodes (serve.ray.address), as a user runs it.

The test starts its own Ray cluster on this machine: a head and a second node, each `ray start --block` in a process
group of its own, in Ray's cluster mode (the private Ray's single-machine mode refuses a second node), with cluster
token authentication on and a marker in their environment. Ray's cluster mode listens on every interface and names
the node by the machine's address: nothing here can keep it on 127.0.0.1, so the cluster lives only for this test.
Then `serve start serve.engine=ray serve.ray.address=<head> serve.ray.max_replicas_per_node=1` deploys the digits
archive's two replicas onto it, one on each node; requests are answered by both nodes' replicas (each node's metrics
port counts the requests of the replicas it runs); `serve stop` deletes infkit's applications and the cluster keeps
running; the test then stops its cluster by the process groups it started (never `ray stop`, which stops every Ray
of the user) and checks that none of its processes is left."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from infkit.serve.core.config import free_ports
from infkit.utils.cpu import usable_cores
from tests.conftest import ROOT
from tests.helpers.ray_processes import stop_marked
from tests.helpers.run_if import run_if

pytestmark = run_if(packages=["ray"])
MARKER = "INFKIT_TEST_RAY_CLUSTER"
REQUESTS = 48
#: a driver that reads the cluster: its nodes, infkit's applications and where their replicas run (JSON on stdout)
INSPECT = """
import json, sys, ray
from ray._private import state
from ray import serve
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False, namespace="serve")
nodes = {n["NodeID"]: {"alive": n["Alive"], "resources": n["Resources"]} for n in ray.nodes()}
replicas = {
    a["Name"]: a["Address"]["NodeID"]
    for a in state.actors().values()
    if a["State"] == "ALIVE" and a["Name"].startswith("SERVE_REPLICA::infkit")
}
try:
    apps = sorted(serve.status().applications)
except Exception as exc:
    apps = [f"error: {type(exc).__name__}"]
print(json.dumps({"nodes": nodes, "replicas": replicas, "apps": apps}))
"""


def inspect(address: str, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", INSPECT, address], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def wait_nodes(address: str, env: dict, count: int, procs, timeout: float = 120) -> dict:
    deadline, seen = time.monotonic() + timeout, None
    while True:
        dead = [p.args[2:4] for p in procs if p.poll() is not None]
        assert not dead, f"a node of the test cluster exited: {dead}"
        try:
            seen = inspect(address, env)
            if sum(n["alive"] for n in seen["nodes"].values()) >= count:
                return seen
        except (AssertionError, subprocess.TimeoutExpired):  # a driver can hang on a port the GCS failed to take
            if time.monotonic() > deadline:
                raise
        assert time.monotonic() < deadline, f"the test cluster did not reach {count} nodes: {seen}"
        time.sleep(1)


#: how many times the test cluster's head is started on newly picked ports when one of them was taken meanwhile
PORT_ATTEMPTS = 3


def ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


def common_args() -> list[str]:
    return [
        *("--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(usable_cores())),
        *("--object-store-memory", str(80 * 1024 * 1024), "--min-worker-port", "0", "--max-worker-port", "0"),
        *("--dashboard-agent-listen-port", "0"),
    ]


def head_command(root: Path, ports: dict) -> list[str]:
    return [
        *(ray_cli(), "start", "--head", *common_args(), "--port", str(ports["gcs"]), "--disable-usage-stats"),
        *("--include-dashboard", "false", "--ray-client-server-port", str(ports["client"])),
        *("--temp-dir", str(root / "h"), "--metrics-export-port", str(ports["head_metrics"])),
    ]


def start_node(name: str, cmd: list[str], root: Path, env: dict, marker: str) -> subprocess.Popen:
    """`ray start --block ...` in a process group of its own, marked, its output in <root>/<name>.log."""
    with open(root / f"{name}.log", "wb") as log:
        return subprocess.Popen(
            cmd,
            env={**env, MARKER: marker},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


@pytest.fixture
def cluster():
    """A head and a second node on this machine; yields (address, the environment a user of it has, processes)."""
    marker = uuid.uuid4().hex
    # Ray's Unix sockets live under each node's temp dir: pytest's tmp_path is too long for them
    root = Path(tempfile.mkdtemp(prefix="rc-"))
    token = root / "token"
    token.write_text(uuid.uuid4().hex + uuid.uuid4().hex)
    token.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_metrics_report_interval_ms": "500",
            # the replicas unpack their archives here; SIGKILLed at the end, they cannot clean up themselves
            "TMPDIR": str(root / "tmp"),
        }
    )
    (root / "tmp").mkdir()
    procs = []
    try:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            ports = free_ports("127.0.0.1", ("gcs", "client", "head_metrics", "node_metrics"))
            address = f"127.0.0.1:{ports['gcs']}"
            head = start_node("head", head_command(root, ports), root, env, marker)
            procs.append(head)
            try:
                wait_nodes(address, env, 1, [head])
                break
            except (AssertionError, subprocess.TimeoutExpired):
                # a free port can be taken by another process between the pick and the GCS's bind: pick again
                log = (root / "head.log").read_text(errors="replace")
                if head.poll() is None or "Address already in use" not in log or attempt == PORT_ATTEMPTS:
                    raise
                print(f"--- head.log (attempt {attempt}: a port was taken, picking others)\n{log[-2000:]}")
                stop_marked([head], MARKER, marker)
                shutil.rmtree(root / "h", ignore_errors=True)
        node = [
            *(ray_cli(), "start", "--address", address, *common_args(), "--temp-dir", str(root / "n")),
            *("--metrics-export-port", str(ports["node_metrics"]), "--resources", json.dumps({"second_node": 1})),
        ]
        procs.append(start_node("node", node, root, env, marker))
        seen = wait_nodes(address, env, 2, procs)
        yield {"address": address, "env": env, "procs": procs, "ports": ports, "root": root, "nodes": seen["nodes"]}
    except BaseException:
        for name in ("head", "node"):
            log = root / f"{name}.log"
            if log.exists():
                print(f"--- {name}.log\n{log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        left = stop_marked(procs, MARKER, marker)
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes of the test cluster left: {[(p.pid, p.name()) for p in left]}"


def serve_cli(*args: str, env: dict, timeout: float = 400) -> subprocess.CompletedProcess:
    """`python src/serve.py ...` from the checkout, as the README runs it."""
    return subprocess.run(
        [sys.executable, str(ROOT / "src" / "serve.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def request_counts(metrics_port: int, app: str) -> dict[str, float]:
    """{replica: requests} of `app`'s replicas that this node runs, from Serve's own request counter as the node's
    metrics port exports it."""
    text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        if line.startswith("ray_serve_deployment_request_counter_total{") and f'application="{app}"' in line:
            replica = re.search(r'replica="([^"]+)"', line)[1]
            out[replica] = out.get(replica, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


@pytest.fixture
def archive(tiny_trained, tmp_path):
    """The digits model of a tiny training run, compiled with ONNX and packaged by the real stages (2 workers)."""
    from omegaconf import OmegaConf

    from infkit.compile import run as compile_stage
    from infkit.package import run as package_stage
    from infkit.utils.compose import compose_config

    overrides = ["experiment=digits_example", f"ckpt_path={tiny_trained.best_ckpt}", "compile=onnx"]
    compile_stage.run(compose_config("trace", [*overrides, "parity.num_images=8"], tmp_path / "compile"))
    store = tmp_path / "model_store"
    cfg = compose_config("package", [f"artifact_dir={tmp_path / 'compile'}", f"model_store={store}"], tmp_path)
    model = package_stage.run(cfg).model_name
    assert OmegaConf.select(cfg, "serve.model.minWorkers") == 2  # the two replicas placed below
    return store, model


@pytest.mark.slow
@pytest.mark.serve
def test_two_replicas_on_two_nodes_answer_and_stop_leaves_the_cluster_running(archive, cluster):
    base = cluster["root"]
    store, model = archive
    app = f"infkit-{model}"
    ports = free_ports("127.0.0.1", ("inference", "grpc", "metrics"))
    state_dir = base / "serve"
    user_env = cluster["env"]  # the cluster's token, as its user has it (RAY_AUTH_MODE, RAY_AUTH_TOKEN_PATH)
    overrides = [
        *("serve.engine=ray", f"serve.ray.address={cluster['address']}", "serve.ray.max_replicas_per_node=1"),
        *(
            "serve.server.front=none",
            f"state_dir={state_dir}",
            f"model_store={store}",
            "serve.server.start_timeout=180",
        ),
        f"serve.server.inference_port={ports['inference']}",
        f"serve.server.grpc_inference_port={ports['grpc']}",
        f"serve.server.metrics_port={ports['metrics']}",
    ]
    t0 = time.monotonic()
    started = serve_cli("start", *overrides, env=user_env)
    print(f"serve start took {time.monotonic() - t0:.1f} s\n{started.stdout[-2000:]}{started.stderr[-3000:]}")
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-3000:]
    stopped = False
    try:
        deployed = json.loads((state_dir / "server.json").read_text())
        assert deployed["external"] == cluster["address"] and deployed["pid"] is None
        import yaml

        serve_config = yaml.safe_load((state_dir / "serve_config.yaml").read_text())
        model_deployment = next(a for a in serve_config["applications"] if a["name"] == app)["deployments"][0]
        assert model_deployment["max_replicas_per_node"] == 1 and model_deployment["num_replicas"] == 2

        seen = inspect(cluster["address"], user_env)
        placed = {name: node for name, node in seen["replicas"].items() if f"::{app}#" in name}
        assert len(placed) == 2 and len(set(placed.values())) == 2, f"not one replica per node: {placed}"
        assert set(placed.values()) == set(cluster["nodes"]), (placed, list(cluster["nodes"]))

        key = json.loads(Path(deployed["key_file"]).read_text())["inference"]["key"]
        image = sorted((ROOT / "tests" / "resources" / "digits").glob("*_*.png"))[0]
        body = image.read_bytes()
        url = f"http://127.0.0.1:{ports['inference']}/predictions/{model}"

        def ask(_i):
            r = requests.post(url, data=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)
            return r.status_code, r.json()

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(REQUESTS)))
        assert all(code == 200 for code, _ in answers), answers[:3]
        labels = {max(a, key=a.get) for _, a in answers}
        assert len(labels) == 1 and all(len(a) == 5 for _, a in answers), answers[:3]  # topk 5, the same image

        # each node's metrics port counts the requests its own replicas answered
        deadline = time.monotonic() + 30
        while True:
            by_node = {name: request_counts(cluster["ports"][f"{name}_metrics"], app) for name in ("head", "node")}
            total = sum(sum(c.values()) for c in by_node.values())
            if total >= REQUESTS or time.monotonic() > deadline:
                break
            time.sleep(1)
        print(f"requests answered by node: {json.dumps(by_node)}")
        assert total == REQUESTS, by_node
        assert all(sum(c.values()) > 0 for c in by_node.values()), f"one node answered everything: {by_node}"
        assert len(by_node["head"]) == len(by_node["node"]) == 1 and set(by_node["head"]) != set(by_node["node"])

        status = serve_cli("status", f"state_dir={state_dir}", env=user_env, timeout=120)
        assert status.returncode == 0 and "Healthy" in status.stdout, status.stdout + status.stderr

        t0 = time.monotonic()
        done = serve_cli("stop", f"state_dir={state_dir}", env=user_env, timeout=200)
        stopped = done.returncode == 0
        print(f"serve stop took {time.monotonic() - t0:.1f} s: {done.stdout.strip()}")
        assert stopped and "keeps running" in done.stdout, done.stdout + done.stderr
    finally:
        if not stopped:
            serve_cli("stop", f"state_dir={state_dir}", env=user_env, timeout=200)

    # the cluster is still running: both nodes alive, both `ray start` processes ours, infkit's applications gone
    assert all(p.poll() is None for p in cluster["procs"])
    after = inspect(cluster["address"], user_env)
    assert sum(n["alive"] for n in after["nodes"].values()) == 2, after["nodes"]
    assert not [a for a in after["apps"] if a.startswith("infkit")], after["apps"]
    assert not after["replicas"], after["replicas"]


def test_on_a_cluster_the_users_ray_mode_and_token_apply_not_the_private_rays(tmp_path):
    from infkit.serve.ray.config import RaySettings
    from infkit.serve.ray.deploy import cluster_env
    from infkit.serve.ray.lifecycle import ray_env

    private = ray_env(tmp_path, RaySettings())
    assert private["RAY_AUTH_TOKEN_PATH"] == str(tmp_path / "ray_auth_token")
    user = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/home/u/.ray/cluster_token"}
    env = cluster_env(private, user)
    assert env["RAY_AUTH_TOKEN_PATH"] == user["RAY_AUTH_TOKEN_PATH"] and env["RAY_AUTH_MODE"] == "token"
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in env  # the cluster's mode, not the private Ray's
    bare = cluster_env(private, {})  # a cluster without token authentication
    assert not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"} & set(bare)


def test_max_replicas_per_node_is_a_whole_number_or_null():
    from infkit.errors import InfkitError
    from infkit.serve.ray.config import RaySettings

    assert RaySettings.from_mapping({"max_replicas_per_node": 1}).max_replicas_per_node == 1
    assert RaySettings.from_mapping({"max_replicas_per_node": None}).max_replicas_per_node is None
    with pytest.raises(InfkitError, match="max_replicas_per_node"):
        RaySettings.from_mapping({"max_replicas_per_node": 0})
