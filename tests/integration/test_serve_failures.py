"""Models that cannot load: named with the reason within seconds; the good ones beside them are served."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml
from omegaconf import OmegaConf

from infkit.compile import manifest as mf
from infkit.errors import InfkitError
from infkit.package.run import archiver_command
from infkit.resources import model_config_file, sample_images
from infkit.serve.core.auth import auth_header, inference_token
from infkit.serve.core.config import ServerConfig
from infkit.serve.core.process import group_members
from infkit.serve.torchserve import server
from infkit.utils.compose import compose_config
from tests.helpers.run_if import run_if

pytestmark = [pytest.mark.slow, pytest.mark.serve, run_if(java=True)]


def archive(compiled: Path, store: Path, name: str, tamper: bool = False) -> Path:
    """The archiver as src/package.py calls it (minus package.py's own sha256 check, to let a tampered one in)."""
    src = compiled
    if tamper:
        src = store.parent / f"{name}-artifacts"
        shutil.copytree(compiled, src)
        artifact = src / "digits_resnet18.onnx"
        artifact.write_bytes(artifact.read_bytes() + b"\0")  # the manifest's sha256 no longer matches
    store.mkdir(exist_ok=True)
    # the archiver stages in $TMPDIR/<model name> and deletes what is there first: two tests of this file archive a
    # "tampered" model, and on two pytest workers at once one archiver removed the other's files. A private TMPDIR,
    # as package.run gives it
    with tempfile.TemporaryDirectory(dir=store.parent) as tmp:
        env = {**os.environ, "TMPDIR": tmp, "TEMP": tmp, "TMP": tmp}
        cmd = archiver_command(name, "1.0", src, mf.read(src), model_config_file(), store)
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return store / f"{name}.mar"


def server_config(tmp_path) -> ServerConfig:
    srv = OmegaConf.to_container(compose_config("serve", [], tmp_path).serve.server, resolve=True)
    return ServerConfig.from_mapping(srv).with_free_ports().replace(start_timeout=200)


def test_one_tampered_model_fails_start_with_the_reason(onnx_compiled, tmp_path):
    archive(onnx_compiled, tmp_path / "store", "tampered", tamper=True)
    state_dir = tmp_path / "state"
    t0 = time.monotonic()
    with pytest.raises(InfkitError, match="model tampered \\(tampered.mar\\) could not be loaded: .*sha256"):
        server.start(server_config(tmp_path), tmp_path / "store", state_dir)
    assert time.monotonic() - t0 < 100, "the failure should be named as soon as the worker reports it"
    assert not server.status(state_dir)["running"]
    assert not (state_dir / "server.json").exists()


def test_bad_archives_beside_a_good_one_are_named_and_the_good_one_served(onnx_compiled, tmp_path):
    store = tmp_path / "store"
    good = archive(onnx_compiled, store, "good")
    archive(onnx_compiled, store, "tampered", tamper=True)
    (store / "truncated.mar").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    srv, state_dir, said = server_config(tmp_path), tmp_path / "state", []
    t0 = time.monotonic()
    state = server.start(srv, store, state_dir, log=said.append)  # three models: not strict by default
    try:
        assert time.monotonic() - t0 < 100
        assert state["models"] == ["good"]
        assert set(state["failed"]) == {"tampered", "truncated"}
        assert "not a readable model archive" in state["failed"]["truncated"]
        assert "sha256" in state["failed"]["tampered"]
        assert any("truncated.mar" in line for line in said) and any("tampered.mar" in line for line in said)
        image = sample_images("digits")[0]
        r = requests.post(
            f"{srv.urls()['inference']}/predictions/good",
            data=image.read_bytes(),
            headers=auth_header(inference_token(state_dir / "key_file.json")),
            timeout=60,
        )
        assert r.status_code == 200, r.text
        info = server.status(state_dir)
        workers = yaml.safe_load(model_config_file().read_text())["minWorkers"]
        assert info["running"] and info["workers"] == {"good": ["READY"] * workers}
        members = {p.name() for p in group_members(info["pgid"])}
        assert "java" in members, members
    finally:
        stopped = server.stop(state_dir)
    assert stopped and group_members(state["pgid"]) == [], "a process of the group outlived stop"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{srv.urls()['inference']}/ping", timeout=5)
    assert not server.status(state_dir)["running"] and not (state_dir / "server.json").exists()
    # asked to be strict, the same store is refused before anything starts
    with pytest.raises(InfkitError, match="cannot serve truncated.mar"):
        server.start(srv, store, state_dir, strict=True)
