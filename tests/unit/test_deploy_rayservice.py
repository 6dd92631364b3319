"""k8s/ray/ checked without a cluster: the RayServices against an excerpt of KubeRay's own CRD schema (v1.7.0,
tests/resources/kuberay/), their pod templates, ConfigMap and Secret against Kubernetes' schemas (kubernetes-validate,
offline), serveConfigV2 against what infkit.serve.ray.config builds for the same archives (and Ray Serve's own
schema), the references between the files and to the image, the resources replicas ask for against what the worker
pods offer, and the prestart script run for real.

The files are .yml: tests/unit/test_deploy_manifests.py checks every k8s/**/*.yaml against its own fixed lists."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.deploy_promql import K8S, ROOT

RAY = K8S / "ray"
KUBERNETES_VERSION = "1.30.0"
SCHEMA = ROOT / "tests/resources/kuberay/rayservice-v1.7.0-schema.yaml"
# KubeRay v1.7.0, ray-operator/controllers/ray/utils/constant.go: the ports and paths its probes and Services use
DASHBOARD_AGENT_PORT, NODE_HEALTH_PATH, PROXY_HEALTH_PATH = 52365, "/api/healthz", "/-/healthz"
AUTH_TOKEN_KEY = "auth_token"  # the key KubeRay reads from authOptions.secretName
VARIANTS = {"cpu": {"node_cpus": 2, "neuron_cores": None}, "neuron": {"node_cpus": 2, "neuron_cores": 2}}
FIXTURE_MODEL = {"cpu": "digits_resnet18_onnx", "neuron": "digits_resnet18_neuronx"}


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def objects() -> list[dict]:
    return [d for path in sorted(RAY.glob("*.yml")) for d in docs(path)]


def rayservice(variant: str) -> dict:
    (doc,) = docs(RAY / f"rayservice-{variant}.yml")
    return doc


def groups(rs: dict) -> list[tuple[str, dict]]:
    """(head|worker, group spec) of a RayService."""
    cluster = rs["spec"]["rayClusterConfig"]
    return [("head", cluster["headGroupSpec"])] + [("worker", g) for g in cluster["workerGroupSpecs"]]


def ray_container(group: dict) -> dict:
    return group["template"]["spec"]["containers"][0]  # KubeRay's RayContainerIndex


def serve_config_v2(rs: dict) -> dict:
    return yaml.safe_load(rs["spec"]["serveConfigV2"])


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"k8s_ray_{name}", RAY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def packaged_model_config() -> dict:
    """model-config.yaml as `infkit package` writes it with the defaults (configs/serve/default.yaml's model)."""
    config = yaml.safe_load((ROOT / "configs/serve/default.yaml").read_text())
    model = config["model"]
    model["handler"]["neuron_layout"] = config["neuron"]["layout"]  # ${serve.neuron.layout}, resolved
    return model


def make_store(tmp_path: Path, variant: str) -> Path:
    """A model store holding the archive the manifest was generated from (the files infkit's Ray engine reads)."""
    store = tmp_path / variant
    store.mkdir()
    name = FIXTURE_MODEL[variant]
    manifest = {"backend": "onnx", "labels": ["0"]}
    if variant == "neuron":
        manifest = {"backend": "neuronx", "labels": ["0"], "backend_options": {}}
    meta = {"model": {"modelName": name, "modelVersion": "1.0", "configFile": "model-config.yaml"}}
    with zipfile.ZipFile(store / f"{name}.mar", "w") as mar:
        mar.writestr("MAR-INF/MANIFEST.json", json.dumps(meta))
        mar.writestr("model-config.yaml", yaml.safe_dump(packaged_model_config(), sort_keys=False))
        mar.writestr("manifest.json", json.dumps(manifest))
    return store


# -- the objects and their schemas -----------------------------------------------------------------------
def test_the_files_hold_two_rayservices_a_configmap_and_a_secret():
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in objects())
    assert kinds == [
        "ConfigMap/infkit-ray-prestart",
        "RayService/infkit-ray-cpu",
        "RayService/infkit-ray-neuron",
        "Secret/infkit-ray-token",
    ]
    # KubeRay names the Services <name>-serve-svc and <name>-head-svc: 63 characters at most in all
    for variant in VARIANTS:
        assert len(rayservice(variant)["metadata"]["name"]) <= 53


def strict(schema):
    """KubeRay's structural schema made strict: an unknown field is an error (the API server would drop it)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_validator():
    import jsonschema

    text = SCHEMA.read_text()
    assert "tag v1.7.0" in text and "ray.io_rayservices.yaml" in text  # the excerpt says where it comes from
    return jsonschema.Draft7Validator(strict(yaml.safe_load(text)))


@pytest.mark.parametrize("variant", VARIANTS)
def test_rayservice_fields_exist_in_kuberays_crd(variant):
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in crd_validator().iter_errors(rayservice(variant))]
    assert not errors


def test_the_crd_check_catches_mistakes():
    validator = crd_validator()
    rs = rayservice("neuron")
    for mutate in (
        lambda d: d["spec"].update(serveConfig=d["spec"].pop("serveConfigV2")),  # KubeRay's old v1alpha1 field
        lambda d: d["spec"]["rayClusterConfig"]["authOptions"].update(mode="tokens"),
        lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].pop("groupName"),
        lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].update(minReplica=1),
        lambda d: d["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
    ):
        bad = copy.deepcopy(rs)
        mutate(bad)
        assert list(validator.iter_errors(bad)), mutate


def pod_template(group: dict) -> dict:
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": group["template"]}


def test_pod_templates_configmap_and_secret_are_valid_kubernetes():
    import kubernetes_validate

    checked = []
    for doc in objects():
        if doc["kind"] in ("ConfigMap", "Secret"):
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            checked.append(doc["kind"])
    for variant in VARIANTS:
        for _kind, group in groups(rayservice(variant)):
            kubernetes_validate.validate(pod_template(group), KUBERNETES_VERSION, strict=True)
            checked.append("PodTemplate")
    assert sorted(checked) == ["ConfigMap", "PodTemplate", "PodTemplate", "PodTemplate", "PodTemplate", "Secret"]


def test_the_pod_template_check_catches_mistakes():
    import kubernetes_validate
    from kubernetes_validate.utils import ValidationError

    (_, worker) = groups(rayservice("cpu"))[1]
    for mutate in (
        lambda c: c["readinessProbe"].update(periodSecond=5),
        lambda c: c.update(env=[{"name": "X", "valueFrom": {"secretRef": {"name": "s"}}}]),
        lambda c: c["ports"].append({"name": "serve", "containerPort": "8000"}),
    ):
        bad = copy.deepcopy(worker)
        mutate(ray_container(bad))
        with pytest.raises(ValidationError):
            kubernetes_validate.validate(pod_template(bad), KUBERNETES_VERSION, strict=True)


def test_ray_version_is_the_one_infkit_pins():
    import tomllib

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ray"]
    (pin,) = [p for p in extra if p.startswith("ray[serve]==")]
    for variant in VARIANTS:
        assert rayservice(variant)["spec"]["rayClusterConfig"]["rayVersion"] == pin.split("==")[1]


# -- serveConfigV2 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_serve_config_v2_is_what_infkit_builds_for_the_archive(tmp_path, variant):
    script = load_script("serve_config_v2")
    store = make_store(tmp_path, variant)
    expected = script.serve_config_v2(store, **VARIANTS[variant])
    assert serve_config_v2(rayservice(variant)) == expected, (
        f"k8s/ray/rayservice-{variant}.yml's serveConfigV2 is not what infkit builds now: regenerate it with "
        f"k8s/ray/serve_config_v2.py (its header says how)"
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_serve_config_v2_is_infkits_serve_config_with_the_cluster_differences(tmp_path, variant):
    """Built independently of the script: infkit.serve.ray.config's file for the same archive, with the archive
    paths of the image, the state folder of the pods, Serve's proxies on the container ports."""
    from infkit.serve.ray.config import INGRESS_APP, RaySettings, model_spec, serve_config

    script = load_script("serve_config_v2")
    ours = serve_config_v2(rayservice(variant))
    store = make_store(tmp_path, variant)
    name = FIXTURE_MODEL[variant]
    settings = RaySettings(neuron_cores=VARIANTS[variant]["neuron_cores"])
    spec = model_spec(name, store / f"{name}.mar", settings, cores=VARIANTS[variant]["node_cpus"])
    limit = -(-spec.max_image_bytes * 4 // 3) + 64 * 1024  # ServerConfig.request_limit, written out
    local = serve_config({name: spec}, settings, ("0.0.0.0", 8000), 9000, "/s/key_file.json", limit, "/s")
    differences = {k for k in local if local[k] != ours.get(k)} | (set(ours) - set(local))
    assert differences == {"proxy_location", "applications"}
    assert local["proxy_location"] == "HeadOnly" and ours["proxy_location"] == "EveryNode"
    text = json.dumps(local["applications"])
    text = text.replace(str(spec.archive), f"{script.NODE_MODEL_STORE}/{name}.mar").replace(
        "/s/", f"{script.STATE_DIR}/"
    )
    assert json.loads(text) == ours["applications"]
    apps = {a["name"]: a for a in ours["applications"]}
    assert apps[INGRESS_APP]["route_prefix"] == "/"
    assert apps[INGRESS_APP]["import_path"] == "infkit.serve.ray.app:ingress_app"
    assert apps[f"infkit-{name}"]["import_path"] == "infkit.serve.ray.app:model_app"
    assert apps[INGRESS_APP]["args"]["key_file"] == f"{script.STATE_DIR}/key_file.json"


@pytest.mark.parametrize("variant", VARIANTS)
def test_serve_config_v2_passes_ray_serves_own_schema(variant):
    schema = pytest.importorskip("ray.serve.schema")
    schema.ServeDeploySchema.model_validate(serve_config_v2(rayservice(variant)))


def test_the_generator_script_runs(tmp_path, capsys):
    script = load_script("serve_config_v2")
    assert script.main([str(make_store(tmp_path, "cpu")), "--node-cpus", "2"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == serve_config_v2(rayservice("cpu"))
    assert script.main([str(tmp_path / "nothing"), "--node-cpus", "2"]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- references: files, paths in the image, Secrets, ports, probes ----------------------------------------
def state_mount(container: dict, pod: dict) -> str:
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "ray-state"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "ray-state"]
    assert "emptyDir" in volume  # per pod, writable by uid 1000 (fsGroup)
    return mount["mountPath"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_paths_in_serve_config_v2_exist_in_every_ray_pod(variant):
    rs = rayservice(variant)
    config = serve_config_v2(rs)
    dockerfile = (ROOT / "docker/Dockerfile.cpu").read_text()
    paths = []
    for app in config["applications"]:
        args = app["args"]
        if "archive" in args:  # the model store baked into the image (Dockerfile.cpu makes the folder)
            assert Path(args["archive"]).parent.as_posix() in dockerfile and args["archive"].endswith(".mar")

        def collect(node):
            for key, value in node.items():
                if isinstance(value, dict):
                    collect(value)
                elif key in ("key_file", "stubs_dir") or key.endswith("_dir"):
                    paths.append(value)

        collect(args)
    assert paths
    prestart = one("ConfigMap", "infkit-ray-prestart")["data"]["prestart.py"]
    for _kind, group in groups(rs):
        pod = group["template"]["spec"]
        container = ray_container(group)
        state = state_mount(container, pod)
        assert all(p.startswith(state + "/") for p in paths), (paths, state)
        # the prestart script writes the key file and the stubs where serveConfigV2 reads them
        (args,) = container["args"]
        script_path, state_arg = args.split()[1:]
        assert args.split()[0] == "python3" and state_arg == state
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "prestart"]
        assert script_path == f"{mount['mountPath']}/prestart.py"
        assert '"key_file.json"' in prestart
    ingress = next(a for a in config["applications"] if a["name"] == "infkit")["args"]
    assert ingress["key_file"] == f"{state}/key_file.json" and ingress["stubs_dir"] == f"{state}/grpc"


def one(kind: str, name: str) -> dict:
    everything = objects() + [d for p in sorted(K8S.glob("*.yaml")) for d in docs(p)]
    (doc,) = [d for d in everything if d.get("kind") == kind and d["metadata"]["name"] == name]
    return doc


@pytest.mark.parametrize("variant", VARIANTS)
def test_secrets_and_configmaps_referenced_exist(variant):
    rs = rayservice(variant)
    auth = rs["spec"]["rayClusterConfig"]["authOptions"]
    assert auth["mode"] == "token"
    token = one("Secret", auth["secretName"])
    assert AUTH_TOKEN_KEY in token["stringData"] and token["stringData"][AUTH_TOKEN_KEY] == ""  # created, not committed
    for _kind, group in groups(rs):
        pod = group["template"]["spec"]
        for volume in pod["volumes"]:
            if "configMap" in volume:
                assert one("ConfigMap", volume["configMap"]["name"])["data"]
        for env in ray_container(group)["env"]:
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:  # the inference key: the same Secret (k8s/secret.yaml) as the TorchServe Deployments
                assert ref["key"] in one("Secret", ref["name"])["stringData"]
        names = {e["name"] for e in ray_container(group)["env"]}
        assert "INFKIT_INFERENCE_KEY" in names


@pytest.mark.parametrize("variant", VARIANTS)
def test_ports_and_probes_match_serve_and_kuberay(variant):
    rs = rayservice(variant)
    config = serve_config_v2(rs)
    name = rs["metadata"]["name"]
    for kind, group in groups(rs):
        container = ray_container(group)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        # KubeRay puts the ports named serve and serve-* on <name>-serve-svc
        assert ports["serve"] == config["http_options"]["port"] and config["http_options"]["host"] == "0.0.0.0"
        assert ports["serve-grpc"] == config["grpc_options"]["port"]
        assert ports["metrics"] == 8080  # KubeRay's default metrics-export-port
        if kind == "head":
            assert ports["gcs-server"] == 6379 and ports["dashboard"] == 8265  # KubeRay reaches the dashboard
            assert f"{name}-serve-svc" in (RAY / f"rayservice-{variant}.yml").read_text()
            readiness = container["readinessProbe"]["httpGet"]
            assert (readiness["port"], readiness["path"]) == (DASHBOARD_AGENT_PORT, NODE_HEALTH_PATH)
        else:  # a worker is ready when its raylet and its Serve proxy are (KubeRay's own check, without wget)
            command = " ".join(container["readinessProbe"]["exec"]["command"])
            assert f"127.0.0.1:{DASHBOARD_AGENT_PORT}{NODE_HEALTH_PATH}" in command
            assert f"127.0.0.1:{ports['serve']}{PROXY_HEALTH_PATH}" in command
            assert "wget" not in command and container["readinessProbe"]["failureThreshold"] == 1
        liveness = container["livenessProbe"]["httpGet"]
        assert (liveness["port"], liveness["path"]) == (DASHBOARD_AGENT_PORT, NODE_HEALTH_PATH)


def test_the_worker_probe_command_runs(tmp_path):
    """The exec probe is Python; run it against nothing listening: it must fail (exit code not 0)."""
    (_, worker) = groups(rayservice("cpu"))[1]
    command = ray_container(worker)["readinessProbe"]["exec"]["command"]
    assert command[0] == "python3"
    code = command[2].replace("127.0.0.1:52365", "127.0.0.1:9").replace("127.0.0.1:8000", "127.0.0.1:9")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "Connection refused" in proc.stderr


# -- images, resources, security ------------------------------------------------------------------------
def test_the_cpu_image_is_the_deployments_and_has_ray():
    deployment = one("Deployment", "infkit-cpu")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    for _kind, group in groups(rayservice("cpu")):
        assert ray_container(group)["image"] == image
    sys.path.insert(0, str(ROOT / "docker"))
    try:
        from runtime_requirements import runtime_pins
    finally:
        sys.path.remove(str(ROOT / "docker"))
    pins = runtime_pins((ROOT / "requirements.lock").read_text(), cuda=False)
    assert "ray==" + rayservice("cpu")["spec"]["rayClusterConfig"]["rayVersion"] in pins
    # the Neuron image of docker/ has no Ray: the manifest names another image and says so
    neuron = {ray_container(g)["image"] for _k, g in groups(rayservice("neuron"))}
    assert neuron == {"infkit-digits-neuron-ray:1.0"}
    assert "which that Dockerfile does not install" in (RAY / "rayservice-neuron.yml").read_text()


def replica_demand(config: dict) -> dict[str, float]:
    """CPUs and NeuronCores every model replica of serveConfigV2 asks for, summed over replicas."""
    need = {"cpu": 0.0, "neuron_cores": 0.0}
    for app in config["applications"]:
        for d in app["deployments"]:
            replicas = d.get("num_replicas") or d.get("autoscaling_config", {}).get("max_replicas", 1)
            options = d.get("ray_actor_options", {})
            need["cpu"] += replicas * float(options.get("num_cpus", 1))
            need["neuron_cores"] += replicas * float(options.get("resources", {}).get("neuron_cores", 0))
    return need


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_replicas_fit_on_the_worker_pods(variant):
    rs = rayservice(variant)
    workers = [g for kind, g in groups(rs) if kind == "worker"]
    head = rs["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # models run on workers only
    have = {"cpu": 0.0, "neuron_cores": 0.0}
    for group in workers:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        resources = ray_container(group)["resources"]
        cpus = float(resources["requests"]["cpu"])
        assert cpus == VARIANTS[variant]["node_cpus"]  # what serveConfigV2's threads were computed for
        have["cpu"] += group["minReplicas"] * cpus
        cores = resources["limits"].get("aws.amazon.com/neuroncore", 0)
        if cores:
            assert cores == resources["requests"]["aws.amazon.com/neuroncore"]
            offered = json.loads(group["rayStartParams"]["resources"].strip("'"))
            assert offered == {"neuron_cores": cores} and cores == VARIANTS[variant]["neuron_cores"]
            have["neuron_cores"] += group["minReplicas"] * cores
    need = replica_demand(serve_config_v2(rs))
    assert 0 < need["cpu"] <= have["cpu"]
    assert need["neuron_cores"] <= have["neuron_cores"]
    assert (need["neuron_cores"] > 0) == (variant == "neuron")


def test_neuron_workers_sit_on_inf2_and_leave_core_assignment_to_the_plugin_and_ray():
    rs = rayservice("neuron")
    for kind, group in groups(rs):
        pod = group["template"]["spec"]
        env = {e["name"] for e in ray_container(group)["env"]}
        assert not env & {"NEURON_RT_VISIBLE_CORES", "NEURON_RT_NUM_CORES"}
        limits = ray_container(group)["resources"]["limits"]
        if kind == "worker":
            assert pod["nodeSelector"]["node.kubernetes.io/instance-type"].startswith("inf2.")
            assert any(t["key"] == "aws.amazon.com/neuron" and t["effect"] == "NoSchedule" for t in pod["tolerations"])
        else:
            assert "aws.amazon.com/neuroncore" not in limits and "tolerations" not in pod


@pytest.mark.parametrize("variant", VARIANTS)
def test_ray_pods_run_as_the_images_non_root_user(variant):
    user = (ROOT / "docker/Dockerfile.cpu").read_text().split("\nUSER ")[1].split(":")[0]
    for _kind, group in groups(rayservice(variant)):
        pod = group["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert str(pod["securityContext"]["runAsUser"]) == user and pod["securityContext"]["fsGroup"] == int(user)
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


# -- the prestart script, run --------------------------------------------------------------------------
def run_prestart(tmp_path: Path, key: str) -> subprocess.CompletedProcess:
    script = tmp_path / "prestart.py"
    script.write_text(one("ConfigMap", "infkit-ray-prestart")["data"]["prestart.py"])
    env = {**os.environ, "INFKIT_INFERENCE_KEY": key}
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / "state")], env=env, capture_output=True, text=True, timeout=120
    )


def test_prestart_writes_the_key_file_the_ingress_reads(tmp_path):
    from infkit.serve.core.auth import inference_token

    key = "k" * 12 + "-a-test-key"
    proc = run_prestart(tmp_path, key)
    assert proc.returncode == 0, proc.stderr
    key_file = tmp_path / "state/key_file.json"
    assert inference_token(key_file) == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert run_prestart(tmp_path, key).returncode == 0  # a restarted container rewrites it


def test_the_grpc_servicer_imports_from_the_installed_infkit_alone(tmp_path):
    """Serve's gRPC proxy imports serveConfigV2's servicer by name, with nothing of the pod's state on its path."""
    for variant in VARIANTS:
        (servicer,) = serve_config_v2(rayservice(variant))["grpc_options"]["grpc_servicer_functions"]
        module, function = servicer.rsplit(".", 1)
        code = f"import {module}; assert callable({module}.{function})"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        check = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, timeout=60)
        assert check.returncode == 0, check.stderr
        for _kind, group in groups(rayservice(variant)):
            assert "PYTHONPATH" not in {e["name"] for e in ray_container(group)["env"]}


@pytest.mark.parametrize("key", ["", "short-key"])
def test_prestart_refuses_an_empty_or_short_key(tmp_path, key):
    proc = run_prestart(tmp_path, key)
    assert proc.returncode != 0 and "infkit-token-keys" in proc.stderr
    assert not (tmp_path / "state/key_file.json").exists()
