"""Packaging and server configuration without starting anything heavy."""

import json
import re
import socket
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from infkit.errors import InfkitError
from infkit.package import run as package_stage
from infkit.serve.core.archives import check_models
from infkit.serve.core.config import ServerConfig
from infkit.serve.torchserve import logs, server
from infkit.utils.compose import compose_config

ROOT = Path(__file__).resolve().parents[2]


def serve_cfg(tmp_path, *overrides):
    cfg = compose_config("serve", list(overrides), tmp_path)
    return cfg, ServerConfig.from_mapping(OmegaConf.to_container(cfg.serve.server, resolve=True))


def minimal_mar(path: Path, model_config: dict | None = None) -> Path:
    """A real zip laid out as torch-model-archiver writes one (manifest + model-config), without a model."""
    with zipfile.ZipFile(path, "w") as mar:
        mar.writestr(
            "MAR-INF/MANIFEST.json", json.dumps({"model": {"modelName": path.stem, "configFile": "model-config.yaml"}})
        )
        mar.writestr("model-config.yaml", yaml.safe_dump(model_config or {"minWorkers": 2}))
    return path


def test_hand_made_model_config_matches_the_hydra_default(tmp_path):
    cfg, _ = serve_cfg(tmp_path)
    assert yaml.safe_load((ROOT / "handlers/model-config.yaml").read_text()) == OmegaConf.to_container(
        cfg.serve.model, resolve=True
    )


def props_of(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_config_properties_are_safe_by_default(tmp_path):
    _, srv = serve_cfg(tmp_path)
    props = props_of(srv.config_properties(tmp_path / "store", 10 * 2**20))
    for key in ("inference_address", "management_address", "metrics_address"):
        assert props[key].startswith("http://127.0.0.1:")
    assert props["grpc_inference_address"] == "127.0.0.1"
    assert props["enable_model_api"] == "false"
    assert props["disable_token_authorization"] == "false"
    assert props["allowed_urls"] == f"file://{(tmp_path / 'store').resolve()}/.*"
    assert props["metrics_mode"] == "prometheus"


def test_one_size_limit_the_handlers_413_is_what_users_meet(tmp_path):
    """TorchServe's own max_request_size (6,553,500 by default) would answer an 8 MB image with an empty 413."""
    _, srv = serve_cfg(tmp_path)
    limit = int(props_of(srv.config_properties(tmp_path, 10 * 2**20))["max_request_size"])
    assert limit >= 10 * 2**20 * 4 // 3  # the largest accepted image, base64 in JSON
    assert int(props_of(srv.config_properties(tmp_path, 2**20))["max_request_size"]) < limit
    _, fixed = serve_cfg(tmp_path, "serve.server.max_request_size=1000000")
    assert props_of(fixed.config_properties(tmp_path, 10 * 2**20))["max_request_size"] == "1000000"


def test_behind_the_guard_torchserves_inference_api_is_on_the_loopback_only(tmp_path):
    _, srv = serve_cfg(tmp_path, "serve.server.address=10.1.2.3")
    props = props_of(srv.config_properties(tmp_path, 2**20, inference_port=9555))
    assert props["inference_address"] == "http://127.0.0.1:9555" and props["metrics_address"].startswith("http://10.")
    assert props_of(srv.config_properties(tmp_path, 2**20))["inference_address"] == "http://10.1.2.3:8080"


def test_ports_are_configurable(tmp_path):
    _, srv = serve_cfg(tmp_path, "serve.server.inference_port=9123", "serve.server.grpc_inference_port=9124")
    props = srv.config_properties(tmp_path, 2**20)
    assert "inference_address=http://127.0.0.1:9123" in props and "grpc_inference_port=9124" in props


@pytest.mark.parametrize(
    "override, words",
    [
        ("+serve.server.inference_prot=1", "unknown serve.server key"),
        ("serve.server.inference_port=99999", "not a TCP port"),
        ("serve.server.token_auth=maybe", "token_auth='maybe'"),
        ("serve.server.log_level=LOUD", "log_level"),
    ],
)
def test_bad_server_settings_name_the_key(tmp_path, override, words):
    with pytest.raises(InfkitError, match=words):
        serve_cfg(tmp_path, override)


def test_log4j2_has_no_duplicates_bounded_files_and_no_per_batch_lines(tmp_path):
    _, srv = serve_cfg(tmp_path)
    root = ET.fromstring(logs.log4j2_xml(tmp_path / "logs", srv))
    loggers = {lg.get("name"): lg for lg in root.find("Loggers")}
    for name in ("org.pytorch.serve", "MODEL_LOG", "ACCESS_LOG", "MODEL_METRICS", "TS_METRICS"):
        assert loggers[name].get("additivity") == "false", name  # one appender per line: nothing written twice
    assert loggers["org.pytorch.serve"].get("level") == "INFO" and loggers["ACCESS_LOG"].get("level") == "off"
    assert root.find("Loggers/Root").get("level") == "warn"
    files = root.findall("Appenders/RollingFile")
    assert {f.get("name") for f in files} == {"ts_log", "model_log"}
    for f in files:
        assert f.find("Policies/SizeBasedTriggeringPolicy").get("size") == "10 MB"
        assert f.find("DefaultRolloverStrategy").get("max") == "4"  # 5 files of 10 MB at most
    for f in files:  # the lines TorchServe writes for every request are filtered out of both logs
        pattern = re.compile(f.find("RegexFilter").get("regex"))
        assert all(pattern.fullmatch(f"x {m} 12 y") for m in logs.PER_REQUEST)
        assert not pattern.fullmatch("Failed to load model: bad.mar")
    _, with_access = serve_cfg(tmp_path, "serve.server.access_log=true")
    assert "access_log" in {
        f.get("name") for f in ET.fromstring(logs.log4j2_xml(tmp_path, with_access)).findall("Appenders/RollingFile")
    }


def test_start_refuses_a_missing_or_empty_model_store(tmp_path):
    _, srv = serve_cfg(tmp_path)
    with pytest.raises(InfkitError, match="model store .* does not exist"):
        server.start(srv, tmp_path / "store", tmp_path / "state")
    (tmp_path / "store").mkdir()
    with pytest.raises(InfkitError, match="no .mar files.*src/package.py"):
        server.start(srv, tmp_path / "store", tmp_path / "state")


def test_start_refuses_an_unknown_model(tmp_path):
    _, srv = serve_cfg(tmp_path)
    minimal_mar(tmp_path / "a.mar")
    with pytest.raises(InfkitError, match="model\\(s\\) b not in .*available: a"):
        server.start(srv, tmp_path, tmp_path / "state", ["b"])


def test_archives_are_read_before_torchserve_starts(tmp_path):
    minimal_mar(tmp_path / "good.mar", {"minWorkers": 3, "handler": {"max_image_bytes": 12345}})
    (tmp_path / "truncated.mar").write_bytes((tmp_path / "good.mar").read_bytes()[:60])
    (tmp_path / "plain.mar").write_bytes(b"not a zip")
    archives, failed = check_models(tmp_path, [])
    assert set(archives) == {"good"} and archives["good"].min_workers == 3
    assert archives["good"].max_image_bytes == 12345
    assert set(failed) == {"truncated", "plain"}
    assert all("not a readable model archive" in why for why in failed.values())
    _, srv = serve_cfg(tmp_path)
    # one model asked for, and it is bad: strict by default, refused before anything starts
    with pytest.raises(InfkitError, match="cannot serve truncated.mar: not a readable model archive"):
        server.start(srv, tmp_path, tmp_path / "state", ["truncated"])
    assert not (tmp_path / "state" / "server.json").exists()


def test_start_names_a_busy_port(tmp_path):
    minimal_mar(tmp_path / "a.mar")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        _, srv = serve_cfg(tmp_path, f"serve.server.metrics_port={busy.getsockname()[1]}")
        with pytest.raises(
            InfkitError, match=f"port {busy.getsockname()[1]} \\(metrics_port\\).*serve.server.metrics_port"
        ):
            server.start(srv, tmp_path, tmp_path / "state")


def test_stop_and_status_without_a_server(tmp_path):
    assert not server.stop(tmp_path)
    assert server.status(tmp_path)["running"] is False


def test_package_needs_an_artifact_dir(tmp_path):
    with pytest.raises(InfkitError, match="artifact_dir is not set"):
        package_stage.run(compose_config("package", [], tmp_path))
    with pytest.raises(InfkitError, match="no manifest"):
        package_stage.run(compose_config("package", [f"artifact_dir={tmp_path}"], tmp_path))
