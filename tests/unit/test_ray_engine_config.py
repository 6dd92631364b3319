"""The Ray engine without Ray running: the .mar -> Serve config mapping, the key file, the metrics aliases, the
engine registry and the state-folder checks (none of these import ray)."""

from __future__ import annotations

import json
import stat
import zipfile

import pytest
import yaml

from infkit.errors import InfkitError
from infkit.serve import engine
from infkit.serve.core.auth import read_keys
from infkit.serve.core.process import STATE_FILE
from infkit.serve.ray import config as rc
from infkit.serve.ray.head import with_aliases
from infkit.serve.ray.lifecycle import check_state_dir, private_cpus, write_keys


def make_mar(path, model_config: dict, manifest: dict | None = None):
    meta = {"model": {"modelName": path.stem, "modelVersion": "1.0", "configFile": "model-config.yaml"}}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("MAR-INF/MANIFEST.json", json.dumps(meta))
        z.writestr("model-config.yaml", yaml.safe_dump(model_config))
        z.writestr("manifest.json", json.dumps(manifest or {"backend": "onnx", "labels": ["a", "b"]}))
    return path


def test_fixed_workers_are_replicas_and_batching_is_serve_batch(tmp_path):
    mar = make_mar(
        tmp_path / "m.mar",
        {"minWorkers": 2, "maxWorkers": 2, "batchSize": 8, "maxBatchDelay": 5, "handler": {"threads": 1}},
    )
    spec = rc.model_spec("m", mar, rc.RaySettings())
    d = spec.deployment()
    assert d["num_replicas"] == 2 and "autoscaling_config" not in d
    assert d["user_config"] == {"batch_size": 8, "batch_wait_timeout_s": 0.005}
    assert d["ray_actor_options"] == {"num_cpus": 1.0}
    assert d["max_ongoing_requests"] == 16 and d["max_constructor_retry_count"] == 1


def test_max_workers_above_min_is_autoscaling_and_threads_default_to_cores_per_worker(tmp_path):
    mar = make_mar(tmp_path / "m.mar", {"minWorkers": 1, "maxWorkers": 4, "batchSize": 4, "maxBatchDelay": 10})
    spec = rc.model_spec("m", mar, rc.RaySettings(max_ongoing_requests=5), cores=8)
    d = spec.deployment()
    assert "num_replicas" not in d
    assert d["autoscaling_config"] == {
        "min_replicas": 1,
        "initial_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 4,
    }
    assert spec.threads == 8 and d["ray_actor_options"]["num_cpus"] == 8.0  # cores // minWorkers
    assert d["max_ongoing_requests"] == 5 and d["user_config"]["batch_wait_timeout_s"] == 0.01


def test_the_private_ray_offers_every_models_first_replicas_their_cpus(tmp_path):
    """Two models of 2 replicas x 1 thread on 2 cores: 4 CPUs, so the second model's replicas start (and a broken
    one is named) instead of waiting for CPUs the first model's replicas hold; never fewer than the cores."""
    two = {"minWorkers": 2, "maxWorkers": 2, "batchSize": 8, "maxBatchDelay": 5, "handler": {"threads": 1}}
    specs = [rc.model_spec(n, make_mar(tmp_path / f"{n}.mar", two), rc.RaySettings()) for n in ("a", "b")]
    assert private_cpus(2, specs) == 4
    assert private_cpus(2, specs[:1]) == 2 and private_cpus(8, specs) == 8
    wide = {"minWorkers": 1, "maxWorkers": 4, "batchSize": 1, "maxBatchDelay": 1, "handler": {"threads": 3}}
    assert private_cpus(2, [rc.model_spec("w", make_mar(tmp_path / "w.mar", wide), rc.RaySettings())]) == 3


def test_neuron_replicas_ask_for_their_pipeline_cores_and_data_parallel_for_all(tmp_path):
    manifest = {"backend": "neuronx", "labels": ["a"], "backend_options": {"pipeline_cores": 2}}
    mar = make_mar(tmp_path / "n.mar", {"minWorkers": 2, "maxWorkers": 2}, manifest)
    assert rc.model_spec("n", mar, rc.RaySettings()).deployment()["ray_actor_options"]["resources"] == {
        "neuron_cores": 2
    }
    plain = {"backend": "neuronx", "labels": ["a"], "backend_options": {}}
    dp = make_mar(tmp_path / "dp.mar", {"minWorkers": 2, "handler": {"neuron_layout": "data_parallel"}}, plain)
    with pytest.raises(InfkitError, match="serve.neuron.cores"):
        rc.model_spec("dp", dp, rc.RaySettings())
    spec = rc.model_spec("dp", dp, rc.RaySettings(), neuron={"cores": 4})
    assert spec.deployment()["num_replicas"] == 1 and spec.resources == {"neuron_cores": 4}


def test_serve_config_is_a_valid_serve_deploy_schema(tmp_path):
    mar = make_mar(tmp_path / "m.mar", {"minWorkers": 1, "batchSize": 2, "maxBatchDelay": 3})
    specs = {"m": rc.model_spec("m", mar, rc.RaySettings())}
    cluster = rc.serve_config(specs, rc.RaySettings(), ("0.0.0.0", 8000), 9000, "/s/key_file.json", 1000, "/s")
    apps = {a["name"]: a for a in cluster["applications"]}  # on a cluster everything goes through the ingress
    assert apps["infkit"]["route_prefix"] == "/" and apps["infkit-m"]["route_prefix"] is None
    assert "http" not in apps["infkit-m"]["args"] and "counters_dir" not in apps["infkit"]["args"]
    specs2 = {**specs, "n": rc.model_spec("n", make_mar(tmp_path / "n.mar", {"minWorkers": 1}), rc.RaySettings())}
    cfg = rc.serve_config(
        specs2, rc.RaySettings(), ("127.0.0.1", 8080), 7070, "/s/key_file.json", 1000, "/s", model_routes=True
    )
    apps = {a["name"]: a for a in cfg["applications"]}
    # the private Ray: each model answers its own predictions route (one actor call per request); the ingress the rest
    assert apps["infkit"]["route_prefix"] == "/" and apps["infkit-m"]["route_prefix"] == "/predictions/m"
    assert apps["infkit-n"]["route_prefix"] == "/predictions/n"
    http = apps["infkit-m"]["args"]["http"]
    assert http["key_file"] == "/s/key_file.json" and http["max_request_size"] == 1000 and http["version"] == "1.0"
    assert http["counters_dir"] == apps["infkit"]["args"]["counters_dir"] == "/s/counters"
    assert "stubs_dir" not in http  # gRPC goes to the ingress
    assert apps["infkit"]["args"]["models"] == {
        "m": {"app": "infkit-m", "version": "1.0"},
        "n": {"app": "infkit-n", "version": "1.0"},
    }
    assert cfg["grpc_options"]["grpc_servicer_functions"] == [rc.GRPC_SERVICER]
    # one model on the private Ray: its application is the only one and answers every route and gRPC (no ingress)
    alone = rc.serve_config(
        specs, rc.RaySettings(), ("127.0.0.1", 8080), 7070, "/s/key_file.json", 1000, "/s", model_routes=True
    )
    assert [(a["name"], a["route_prefix"]) for a in alone["applications"]] == [("infkit-m", "/")]
    assert alone["applications"][0]["args"]["http"]["stubs_dir"] == "/s/grpc"
    # unless ingress replicas are asked for (the infkit:ray-onnx image does: /ping answered beside saturated replicas)
    kept = rc.serve_config(
        specs,
        rc.RaySettings(ingress_replicas=1),
        ("127.0.0.1", 8080),
        7070,
        "/s/key_file.json",
        1000,
        "/s",
        model_routes=True,
    )
    assert [(a["name"], a["route_prefix"]) for a in kept["applications"]] == [
        ("infkit-m", "/predictions/m"),
        ("infkit", "/"),
    ]
    assert kept["applications"][1]["deployments"][0]["num_replicas"] == 1
    with pytest.raises(InfkitError, match="ingress_replicas"):
        rc.RaySettings.from_mapping({"ingress_replicas": 0})
    schema = pytest.importorskip("ray.serve.schema")
    for config in (cfg, alone, kept, cluster):
        path = rc.write_serve_config(tmp_path, config)
        assert yaml.safe_load(path.read_text()) == config
        schema.ServeDeploySchema.model_validate(config)  # what `serve deploy` and KubeRay's serveConfigV2 accept


def test_the_key_file_is_torchserves_format_and_mode_0600(tmp_path):
    keys = write_keys(tmp_path / "key_file.json")
    assert stat.S_IMODE((tmp_path / "key_file.json").stat().st_mode) == 0o600
    data = json.loads((tmp_path / "key_file.json").read_text())
    assert set(data) == {"inference", "management"} and all(set(v) == {"key"} for v in data.values())
    assert read_keys(tmp_path / "key_file.json") == keys and keys["inference"] != keys["management"]


def test_metrics_get_torchserves_names_beside_rays():
    text = (
        "# TYPE ray_ts_inference_requests_total counter\n"
        'ray_ts_inference_requests_total{model_name="m",replica="r1"} 3.0\n'
        'ray_infkitpreprocessms_total{model_name="m"} 12.5\n'
        'ray_serve_num_http_requests_total{route="/"} 3.0\n'
    )
    out = with_aliases(text)
    assert text.strip() in out
    assert 'ts_inference_requests_total{model_name="m",replica="r1"} 3.0' in out.splitlines()
    assert 'InfkitPreprocessMs{model_name="m"} 12.5' in out.splitlines()
    from infkit.bench.promscrape import parse

    assert parse(out, "m")["ts_inference_requests_total"] == 3.0 and parse(out, "m")["InfkitPreprocessMs"] == 12.5


def test_engines_are_found_by_name_and_a_state_without_one_is_torchserve(tmp_path):
    assert engine.get_engine("ray").name == "ray" and engine.get_engine(None).name == "torchserve"
    with pytest.raises(InfkitError, match="torchserve or ray"):
        engine.get_engine("triton")
    assert engine.engine_of(tmp_path) == "torchserve"
    (tmp_path / STATE_FILE).write_text(json.dumps({"pid": 1}))
    assert engine.engine_of(tmp_path) == "torchserve"
    (tmp_path / STATE_FILE).write_text(json.dumps({"engine": "ray", "pid": 1}))
    assert engine.engine_of(tmp_path) == "ray"


def test_settings_name_a_wrong_key_and_a_long_state_dir_names_the_fix(tmp_path):
    with pytest.raises(InfkitError, match="unknown serve.ray key"):
        rc.RaySettings.from_mapping({"num_cpu": 2})
    with pytest.raises(InfkitError, match="object_store_mb"):
        rc.RaySettings.from_mapping({"object_store_mb": 1})
    with pytest.raises(InfkitError, match="state_dir=/tmp/infkit-serve"):
        check_state_dir(tmp_path / ("x" * 60))
    check_state_dir("/tmp/infkit-serve")  # short enough


def test_nothing_outside_the_ray_engine_imports_ray():
    import subprocess
    import sys

    code = (
        "import sys, infkit.serve.engine, infkit.cli.serve, infkit.serve.ray.config, infkit.serve.ray.lifecycle, "
        "infkit.serve.ray.head; print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_replicas_counts_are_summed_from_their_files_and_served_under_torchserves_names(tmp_path):
    from infkit.serve.ray.app import LATENCY, REQUESTS, LiveCounts
    from infkit.serve.ray.head import read_counts

    assert read_counts(str(tmp_path / "missing")) is None
    a = LiveCounts(str(tmp_path), "m-replica/1", ["m"], [REQUESTS, LATENCY, "InfkitBatches"])
    b = LiveCounts(str(tmp_path), "ingress", ["m", "n"], [REQUESTS, LATENCY])
    zero = read_counts(str(tmp_path))
    assert zero["n"] == {REQUESTS: 0, LATENCY: 0} and zero["m"]["InfkitBatches"] == 0  # every counter shows 0 at once
    for took in (1234.5, 99.0):
        a.add("m", {REQUESTS: 1, LATENCY: took, "InfkitBatches": 1})
    b.add("n", {REQUESTS: 1, LATENCY: 10.0})
    readings: dict = {}
    live = read_counts(str(tmp_path), readings)
    assert live == {"m": {REQUESTS: 2, LATENCY: 1333.5, "InfkitBatches": 2}, "n": {REQUESTS: 1, LATENCY: 10.0}}
    (tmp_path / "ingress.json").write_text('{"m": {"ts_infer')  # caught while written: its last reading counts
    assert read_counts(str(tmp_path), readings)["n"] == {REQUESTS: 1, LATENCY: 10.0}
    assert LiveCounts(str(tmp_path / "elsewhere"), "x", ["m"], [REQUESTS]).fd is None  # no folder (another node)
    # served under TorchServe's names, in place of Ray's lagging export of the same counter
    text = 'ray_ts_inference_requests_total{model_name="m"} 1.0\nray_infkitpreprocessms_total{model_name="m"} 5.0\n'
    out = with_aliases(text, live).splitlines()
    assert 'ts_inference_requests_total{model_name="m"} 2.0' in out and 'InfkitBatches{model_name="m"} 2.0' in out
    assert (
        'ts_inference_requests_total{model_name="m"} 1.0' not in out and 'InfkitPreprocessMs{model_name="m"} 5.0' in out
    )


def test_an_unknown_ingress_is_named_with_the_choices():
    with pytest.raises(InfkitError, match=r"serve.ray.ingress='nginx'; choose haproxy or proxy"):
        rc.RaySettings.from_mapping({"ingress": "nginx"})
    assert rc.RaySettings.from_mapping({}).ingress == "haproxy"


@pytest.mark.parametrize("host,bind", [("0.0.0.0", "0.0.0.0"), ("127.0.0.1", "127.0.0.1"), ("::", "ipv6@::")])
def test_the_installed_rays_haproxy_template_takes_every_edit(host, bind):
    """bind/sitecustomize.py edits Serve's HAProxy template as it is imported (in a child: the import is Ray's). Every
    edit applies once to the Ray installed here, and the result is a template jinja2 can parse."""
    import os
    import subprocess
    import sys

    from infkit.serve.ray.lifecycle import BIND_DIR

    code = (
        "import jinja2\n"
        "from ray.serve._private import haproxy_templates as t\n"
        "jinja2.Environment().parse(t.HAPROXY_CONFIG_TEMPLATE)\n"
        "print(t.HAPROXY_CONFIG_TEMPLATE)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(BIND_DIR),
        "INFKIT_HAPROXY_HTTP_HOST": host,
        "INFKIT_RAY_GRPC_HOST": host,
        "INFKIT_RAY_GRPC_APP": "infkit",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "mode 666" not in text and "mode 600 level admin" in text
    assert "bind :{{" not in text and "bind *:{{" not in text
    assert f"{{%- set infkit_http_host = '{bind}' %}}" in text
    assert "selectattr('app_name', 'equalto', infkit_grpc_app)" in text
