"""Packaging and server configuration without starting anything heavy."""

import socket
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from infkit.errors import InfkitError
from infkit.package import run as package_stage
from infkit.serve import server
from infkit.utils.compose import compose_config

ROOT = Path(__file__).resolve().parents[2]


def serve_cfg(tmp_path, *overrides):
    cfg = compose_config("serve", list(overrides), tmp_path)
    return cfg, OmegaConf.to_container(cfg.serve.server, resolve=True)


def test_hand_made_model_config_matches_the_hydra_default(tmp_path):
    cfg, _ = serve_cfg(tmp_path)
    assert yaml.safe_load((ROOT / "handlers/model-config.yaml").read_text()) == \
        OmegaConf.to_container(cfg.serve.model, resolve=True)


def test_config_properties_are_safe_by_default(tmp_path):
    _, srv = serve_cfg(tmp_path)
    props = dict(line.split("=", 1) for line in server.config_properties(srv, tmp_path / "store").splitlines())
    for key in ("inference_address", "management_address", "metrics_address"):
        assert props[key].startswith("http://127.0.0.1:")
    assert props["grpc_inference_address"] == "127.0.0.1"
    assert props["enable_model_api"] == "false"
    assert props["disable_token_authorization"] == "false"
    assert props["allowed_urls"] == f"file://{(tmp_path / 'store').resolve()}/.*"
    assert props["metrics_mode"] == "prometheus"


def test_ports_are_configurable(tmp_path):
    _, srv = serve_cfg(tmp_path, "serve.server.inference_port=9123", "serve.server.grpc_inference_port=9124")
    props = server.config_properties(srv, tmp_path)
    assert "inference_address=http://127.0.0.1:9123" in props and "grpc_inference_port=9124" in props


def test_start_refuses_an_empty_model_store(tmp_path):
    _, srv = serve_cfg(tmp_path)
    (tmp_path / "store").mkdir()
    with pytest.raises(InfkitError, match="no .mar files.*src/package.py"):
        server.start(srv, tmp_path / "store", tmp_path / "state")


def test_start_refuses_an_unknown_model(tmp_path):
    _, srv = serve_cfg(tmp_path)
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "a.mar").write_bytes(b"")
    with pytest.raises(InfkitError, match="model\\(s\\) b not in .*available: a"):
        server.start(srv, tmp_path / "store", tmp_path / "state", ["b"])


def test_start_names_a_busy_port(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "a.mar").write_bytes(b"")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        _, srv = serve_cfg(tmp_path, f"serve.server.metrics_port={busy.getsockname()[1]}")
        with pytest.raises(InfkitError, match=f"port {busy.getsockname()[1]} \\(metrics_port\\).*serve.server.metrics_port"):
            server.start(srv, tmp_path / "store", tmp_path / "state")


def test_stop_and_status_without_a_server(tmp_path):
    assert server.stop(tmp_path) is False
    assert server.status(tmp_path)["running"] is False


def test_package_needs_an_artifact_dir(tmp_path):
    with pytest.raises(InfkitError, match="artifact_dir is not set"):
        package_stage.run(compose_config("package", [], tmp_path))
    with pytest.raises(InfkitError, match="no manifest"):
        package_stage.run(compose_config("package", [f"artifact_dir={tmp_path}"], tmp_path))
