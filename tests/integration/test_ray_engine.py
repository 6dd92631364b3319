"""The Ray Serve engine end to end: one private Ray for the module serving the digits ONNX archive (packaged by
src/package.py, as the TorchServe live server's) as `serve start serve.engine=ray` does for the demo's one archive (its
application alone answers every route); tests/test_serve (REST, gRPC, explain, hostile clients) run unchanged against
it; every listening socket of its process tree is on the loopback; status, and a stop that leaves no process behind.
A second private Ray serves it beside an archive that cannot load, through the ingress application."""

from __future__ import annotations

import json
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import psutil
import pytest
import requests
from omegaconf import OmegaConf

from infkit.demo import live_tests_command
from infkit.serve.core.config import ServerConfig
from infkit.serve.core.front import NGINX_FIX, find_nginx
from infkit.serve.core.grpc_client import PredictionClient
from tests.conftest import ROOT
from tests.helpers.run_if import in_ci, run_if

pytestmark = [pytest.mark.slow, pytest.mark.serve, run_if(packages=["ray"])]
LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")


def broken_copy(good: Path, store: Path) -> Path:
    """The same archive with its manifest's sha256 of the artifact changed: readable, but no replica can load it."""
    bad = store / "digits_broken.mar"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "manifest.json":
                manifest = json.loads(data)
                manifest["artifacts"][0]["sha256"] = "0" * 64
                data = json.dumps(manifest).encode()
            dst.writestr(item, data)
    return bad


def listeners(procs) -> list[tuple[int, str, int, str]]:
    out = []
    for p in procs:
        try:
            for c in p.net_connections("inet"):
                if c.status == psutil.CONN_LISTEN:
                    # the executable's name in full (a long venv path cut the command line before "haproxy" once)
                    out.append((p.pid, c.laddr.ip, c.laddr.port, f"{p.name()} | {' '.join(p.cmdline())[:60]}"))
        except psutil.Error:
            continue
    return out


@pytest.fixture(scope="module")
def ray_server(onnx_compiled, tmp_path_factory):
    from infkit.package import run as package_stage
    from infkit.serve.engine import get_engine
    from infkit.utils.compose import compose_config

    if find_nginx() is None:
        (pytest.fail if in_ci() else pytest.skip)(f"the default front needs nginx: {NGINX_FIX}")
    base = tmp_path_factory.mktemp("ray")
    store = base / "model_store"
    store.mkdir()
    cfg = compose_config("package", [f"artifact_dir={onnx_compiled}", f"model_store={store}"], base / "package")
    model = package_stage.run(cfg).model_name
    mixed = base / "mixed_store"  # the archive beside one that cannot load
    mixed.mkdir()
    shutil.copy(store / f"{model}.mar", mixed)
    broken_copy(store / f"{model}.mar", mixed)
    serve_cfg = compose_config("serve", ["serve.engine=ray"], base)
    srv = ServerConfig.from_mapping(OmegaConf.to_container(serve_cfg.serve.server, resolve=True)).with_free_ports()
    engine = get_engine("ray", OmegaConf.to_container(serve_cfg.serve, resolve=True))
    # Ray's Unix sockets live under the state folder: a short one (pytest's tmp paths are too long)
    state_dir = Path(tempfile.mkdtemp(prefix="ir-")) / "serve"
    t0 = time.monotonic()
    state = engine.start(srv, store, state_dir, log=print)
    seconds = time.monotonic() - t0
    print(f"Ray engine ready in {seconds:.1f} s")
    yield {
        "state": state,
        "server": srv,
        "model": model,
        "state_dir": state_dir,
        "engine": engine,
        "start_s": seconds,
        "store": store,
        "mixed_store": mixed,
    }
    engine.stop(state_dir)
    shutil.rmtree(state_dir.parent, ignore_errors=True)


def test_the_live_suite_passes_unchanged(ray_server):
    srv = ray_server["server"]
    cmd = live_tests_command(
        srv, ray_server["model"], ray_server["state"]["key_file"], tests_dir=ROOT / "tests/test_serve"
    )
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1]


def test_serve_config_file_is_next_to_the_state(ray_server):
    import yaml

    cfg = yaml.safe_load((ray_server["state_dir"] / "serve_config.yaml").read_text())
    # one model: its application is the only one, on every route (no ingress replica)
    assert [(a["name"], a["route_prefix"]) for a in cfg["applications"]] == [(f"infkit-{ray_server['model']}", "/")]
    model_app = cfg["applications"][0]["deployments"][0]
    assert model_app["num_replicas"] == 2 and model_app["user_config"] == {
        "batch_size": 8,
        "batch_wait_timeout_s": 0.005,
    }


def test_every_listening_socket_is_on_the_loopback(ray_server):
    from infkit.serve.ray.lifecycle import our_processes

    procs = our_processes(ray_server["state"])
    found = listeners(procs)
    ports = {p for _, _, p, _ in found}
    srv = ray_server["server"]
    assert {srv.inference_port, srv.grpc_inference_port, srv.metrics_port} <= ports, found
    outside = [x for x in found if x[1] not in LOOPBACK]
    assert not outside, f"listening beyond the loopback: {outside}"
    assert len(procs) > 8  # Ray's GCS, raylet, agents, Serve's controller, proxy and replicas were all looked at
    # the default ingress is Serve's HAProxy: it holds the inference port (behind the nginx front's upstream) and gRPC
    haproxy = {port for _, _, port, cmd in found if "haproxy" in cmd}
    assert srv.grpc_inference_port in haproxy and ray_server["state"]["upstream_port"] in haproxy, found
    # no listener another server could share (SO_REUSEPORT): Serve turns it off for the replicas' gRPC servers with a
    # value gRPC ignores, and two servers' replicas then took each other's calls. Serve's fallback HTTP proxy keeps
    # it, on a port infkit picked free
    shared = []
    for pid, ip, port, cmd in found:
        probe = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind((ip, port))
            shared.append((pid, ip, port, cmd))
        except OSError:
            pass
        finally:
            probe.close()
    assert all("ProxyActor" in cmd for *_, cmd in shared), shared


def test_the_private_ray_runs_no_log_or_autoscaler_monitor(ray_server):
    """A private Ray is one machine with no driver attached: Ray's log monitor and autoscaler monitor are not started
    (docs/serving-engines.md, "Where a request goes, and what it costs")."""
    from infkit.serve.ray.lifecycle import our_processes

    commands = []
    for p in our_processes(ray_server["state"]):
        try:
            commands.append(" ".join(p.cmdline()))
        except psutil.Error:
            continue
    assert any("gcs_server" in c for c in commands), commands  # the tree was read
    assert not [c for c in commands if "autoscaler/_private/monitor.py" in c or "log_monitor.py" in c], commands


def test_haproxy_files_are_the_servers_own_and_its_admin_socket_is_private(ray_server):
    """Serve's HAProxy ingress writes under <state_dir>/h (0700), its admin socket (`level admin`) is 0600, and its
    config binds the metrics and stats frontends to the loopback (Ray's template says every interface)."""
    base = ray_server["state_dir"] / "h"
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    (node,) = [d for d in base.iterdir() if d.is_dir()]  # one folder per Ray node: this Ray has one
    assert stat.S_ISSOCK((node / "a").stat().st_mode) and stat.S_IMODE((node / "a").stat().st_mode) == 0o600
    config = (node / "c").read_text()
    binds = [line.split()[1] for line in config.splitlines() if line.strip().startswith("bind ")]
    assert len(binds) == 4 and all(b.startswith("127.0.0.1:") for b in binds), binds
    # a gRPC call naming no application goes to the only one, the model's
    assert "mode 666" not in config and f"default_backend grpc-infkit-{ray_server['model']}\n" in config


def test_the_python_proxy_and_the_ingress_serve_beside_an_archive_that_cannot_load(ray_server):
    """serve.ray.ingress=proxy: Serve's Python proxy instead of HAProxy (what a cluster runs), a second private Ray
    given the archive and one that cannot load: that one is named as Serve reports it and the other is served, its
    own route and the ingress application's (/ping, explanations, versions, gRPC); no HAProxy runs, and its
    listeners stay on the loopback."""
    import yaml

    from infkit.serve.engine import get_engine
    from infkit.serve.ray.lifecycle import our_processes

    model = ray_server["model"]
    srv = ray_server["server"].with_free_ports()
    state_dir = Path(tempfile.mkdtemp(prefix="ir-")) / "serve"
    options = ray_server["engine"].options
    engine = get_engine("ray", {**options, "ray": {**options["ray"], "ingress": "proxy"}})
    t0 = time.monotonic()
    state = engine.start(srv, Path(ray_server["mixed_store"]), state_dir, strict=False, log=print)
    seconds = time.monotonic() - t0
    try:
        assert state["models"] == [model]
        assert "digits_broken" in state["failed"] and "sha256" in state["failed"]["digits_broken"], state["failed"]
        # named as Serve reports it (one constructor try), not after the start timeout
        assert seconds < srv.start_timeout / 2
        cfg = yaml.safe_load((state_dir / "serve_config.yaml").read_text())
        assert [a["name"] for a in cfg["applications"]] == [f"infkit-{model}", "infkit"]  # the failed one left out
        found = listeners(our_processes(state))
        assert not [x for x in found if x[1] not in LOOPBACK], found
        assert not [x for x in found if "haproxy" in x[3]] and not (state_dir / "h").exists(), found
        png = (ROOT / "tests/resources/digits/0_6.png").read_bytes()
        key = json.loads((state_dir / "key_file.json").read_text())["inference"]["key"]
        auth = {"Authorization": f"Bearer {key}"}
        base = f"http://127.0.0.1:{srv.inference_port}"
        for route in (f"predictions/{model}", f"predictions/{model}/1.0"):  # the model's own route; the ingress
            answer = requests.post(f"{base}/{route}", data=png, headers=auth, timeout=30)
            assert answer.status_code == 200 and next(iter(answer.json())) == "6", (route, answer.text)
        assert requests.get(f"{base}/ping", timeout=10).json() == {"status": "Healthy"}
        missing = requests.post(f"{base}/predictions/digits_broken", data=png, headers=auth, timeout=30)
        assert missing.status_code == 404 and missing.json()["type"] == "ModelNotFoundException", missing.text
        client = PredictionClient(f"127.0.0.1:{srv.grpc_inference_port}", key, state_dir / "stubs")
        try:
            assert next(iter(json.loads(client.predict(ray_server["model"], png)))) == "6"
        finally:
            client.close()
    finally:
        engine.stop(state_dir)
        shutil.rmtree(state_dir.parent, ignore_errors=True)


def test_with_address_0000_only_the_inference_grpc_and_metrics_ports_leave_the_loopback(ray_server, tmp_path):
    """A second server of the same archive on 0.0.0.0 (its own private Ray): everything but the three public ports
    stays on 127.0.0.1."""
    from infkit.serve.ray.lifecycle import our_processes

    srv = ray_server["server"].replace(address="0.0.0.0").with_free_ports()
    state_dir = Path(tempfile.mkdtemp(prefix="ir-")) / "serve"
    model_store = Path(ray_server["store"])
    state = ray_server["engine"].start(srv, model_store, state_dir, [ray_server["model"]], log=print)
    try:
        found = listeners(our_processes(state))
        public = {srv.inference_port, srv.grpc_inference_port, srv.metrics_port}
        outside = {(ip, port) for _, ip, port, _ in found if ip not in LOOPBACK}
        assert {port for _, port in outside} == public, found
        assert all(ip in ("0.0.0.0", "::", "::ffff:0.0.0.0") for ip, _ in outside), outside
    finally:
        ray_server["engine"].stop(state_dir)
        shutil.rmtree(state_dir.parent, ignore_errors=True)


def test_status_says_running(ray_server):
    from infkit.serve.engine import status

    info = status(ray_server["state_dir"])
    assert info["running"] and info["engine"] == "ray" and info["ping"] == "Healthy", info


def test_stop_on_a_state_naming_a_process_infkit_did_not_start_signals_nothing(tmp_path):
    from infkit.serve.core.process import STATE_FILE
    from infkit.serve.engine import stop

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        state = {
            "engine": "ray",
            "pid": other.pid,
            "pgid": other.pid,
            "create_time": psutil.Process(other.pid).create_time() - 1000,  # a reused pid: another process
            "state_dir": str(tmp_path),
            "started_at": "earlier",
        }
        (tmp_path / STATE_FILE).write_text(json.dumps(state))
        stopped = stop(tmp_path)
        assert not stopped and "left alone" in stopped.message
        assert other.poll() is None and not (tmp_path / STATE_FILE).exists()
    finally:
        other.kill()
        other.wait()


def test_stop_leaves_no_process_behind(ray_server):
    """Last in this module: it stops the module's server."""
    from infkit.serve.engine import status, stop
    from infkit.serve.ray.lifecycle import our_processes

    state = ray_server["state"]
    before = our_processes(state)
    unpacked = list((ray_server["state_dir"] / "tmp").glob(f"infkit-ray-{ray_server['model']}-*"))
    assert len(unpacked) >= 2, unpacked  # each replica's copy of the archive, under the state folder
    t0 = time.monotonic()
    assert stop(ray_server["state_dir"])
    took = time.monotonic() - t0
    alive = [p for p in before if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [(p.pid, p.name()) for p in alive]
    assert not (ray_server["state_dir"] / "tmp").exists()  # killed replicas leave no unpacked archive behind
    assert not (ray_server["state_dir"] / "h").exists()  # nor HAProxy's files
    assert not our_processes(state)
    assert status(ray_server["state_dir"])["running"] is False
    print(f"stopped {len(before)} processes in {took:.1f} s")
