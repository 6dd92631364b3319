"""End to end: train digits -> compile (torchscript, onnx) -> package (src/package.py and the plain
torch-model-archiver command) -> a real TorchServe on free loopback ports -> tests/test_serve -> stop."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from omegaconf import OmegaConf

from infkit.compile import run as compile_stage
from infkit.package import run as package_stage
from infkit.serve import server
from infkit.utils.compose import compose_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.serve]


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def plain_archiver(artifact_dir: Path, model_name: str, store: Path) -> Path:
    """The README's hand-written torch-model-archiver command, run as a user would."""
    manifest = OmegaConf.load(artifact_dir / "manifest.json")
    artifact = artifact_dir / manifest.artifacts[0].file
    extra = [artifact_dir / "manifest.json", artifact_dir / manifest.eager_weights.file,
             artifact_dir / "index_to_name.json"]
    cmd = [str(Path(sys.executable).with_name("torch-model-archiver")), "--model-name", model_name,
           "--version", "1.0", "--serialized-file", str(artifact), "--handler", str(ROOT / "handlers/infkit_handler.py"),
           "--extra-files", ",".join(map(str, extra)), "--config-file", str(ROOT / "handlers/model-config.yaml"),
           "--export-path", str(store)]
    subprocess.run(cmd, check=True, capture_output=True)
    return store / f"{model_name}.mar"


@pytest.fixture(scope="module")
def running_server(digits_trained, tmp_path_factory):
    base = tmp_path_factory.mktemp("live")
    store = base / "model_store"
    store.mkdir()
    models = {}
    for backend in ("torchscript", "onnx"):
        out = base / f"compile-{backend}"
        compile_stage.run(compose_config("trace", ["experiment=digits_example", f"ckpt_path={digits_trained.best_ckpt}",
                                                   f"compile={backend}"], out))
        if backend == "onnx":
            cfg = compose_config("package", [f"artifact_dir={out}", f"model_store={store}"], base / "package")
            models[backend] = package_stage.run(cfg).model_name
        else:
            models[backend] = "digits_plain_torchscript"
            plain_archiver(out, models[backend], store)
    ports = free_ports(5)
    srv = OmegaConf.to_container(compose_config("serve", [], base).serve.server, resolve=True)
    srv.update(zip(("inference_port", "management_port", "metrics_port", "grpc_inference_port",
                    "grpc_management_port"), ports))
    state_dir = base / "serve"
    state = server.start(srv, store, state_dir, min_workers=1)
    yield {"state": state, "server": srv, "models": models, "state_dir": state_dir}
    server.stop(state_dir)


@pytest.mark.parametrize("backend", ["onnx", "torchscript"])
def test_live_suite_passes(running_server, backend):
    srv = running_server["server"]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests/test_serve"),
           "--public_ip", "127.0.0.1", "--model", running_server["models"][backend], "--dataset", "digits",
           "--http_port", str(srv["inference_port"]), "--grpc_port", str(srv["grpc_inference_port"]),
           "--metrics_port", str(srv["metrics_port"]), "--key_file", running_server["state"]["key_file"]]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1]


def test_status_then_stop_leaves_no_process(running_server):
    state_dir = running_server["state_dir"]
    info = server.status(state_dir)
    assert info["running"] and set(info["workers"]) == set(running_server["models"].values())
    assert all(s == ["READY"] for s in info["workers"].values()), info["workers"]
    pgid = info["pgid"]
    members = subprocess.run(["pgrep", "-l", "-g", str(pgid)], capture_output=True, text=True).stdout
    assert "java" in members
    assert server.stop(state_dir)
    leftover = subprocess.run(["pgrep", "-l", "-g", str(pgid)], capture_output=True, text=True).stdout
    assert leftover.strip() == "", leftover
    with pytest.raises(requests.ConnectionError):
        requests.get(running_server["state"]["urls"]["inference"] + "/ping", timeout=5)
    assert not server.status(state_dir)["running"]
