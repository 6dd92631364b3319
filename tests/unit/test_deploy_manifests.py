"""k8s/ checked without a cluster: built-in kinds against the Kubernetes JSON schemas that kubernetes-validate ships
(offline), the CRDs (KEDA ScaledObject, KServe ServingRuntime and InferenceService) against the fields their
documentation requires, references between the files, and the auth proxy's nginx config (docker/ has its own
tests: test_deploy_docker.py)."""

from __future__ import annotations

import copy
import subprocess

import pytest
import yaml

from tests.deploy_promql import K8S, ROOT, properties

KUBERNETES_VERSION = "1.30.0"
BUILTIN_GROUPS = {"v1", "apps/v1", "autoscaling/v2", "policy/v1", "networking.k8s.io/v1"}


def manifests() -> list[tuple[str, dict]]:
    """(file, document) for every Kubernetes object under k8s/ (Helm values and Prometheus configs have no kind)."""
    docs = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "kind" in doc:
                docs.append((str(path.relative_to(ROOT)), doc))
    return docs


def by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def one(kind: str, name: str) -> dict:
    (doc,) = [d for d in by_kind(kind) if d["metadata"]["name"] == name]
    return doc


def test_every_builtin_kind_is_valid_against_the_kubernetes_schema():
    import kubernetes_validate

    checked = []
    for _path, doc in manifests():
        if doc["apiVersion"] in BUILTIN_GROUPS:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            checked.append(f"{doc['kind']}/{doc['metadata']['name']}")
    assert sorted(checked) == sorted(
        [
            "ConfigMap/infkit-torchserve-config",
            "ConfigMap/infkit-auth-proxy",
            "Secret/infkit-token-keys",
            "Service/infkit",
            "Deployment/infkit-cpu",
            "Deployment/infkit-neuron",
            "HorizontalPodAutoscaler/infkit-cpu",
        ]
    )


def test_the_schema_check_catches_mistakes():
    import kubernetes_validate
    from kubernetes_validate.utils import ValidationError

    deployment = one("Deployment", "infkit-cpu")
    for mutate in (
        lambda d: d["spec"].update(replicas="two"),
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagePullPolicy=None, portz=[]),
        lambda d: d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"].update(periodSecond=5),
    ):
        bad = copy.deepcopy(deployment)
        mutate(bad)
        with pytest.raises(ValidationError):
            kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_every_object_has_a_known_kind():
    kinds = {doc["kind"] for _, doc in manifests()}
    assert kinds == {
        "ConfigMap",
        "Secret",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
        "ScaledObject",
        "ServingRuntime",
        "InferenceService",
    }


# -- CRDs: the fields their documentation requires --------------------------------------------------------
def test_keda_scaled_object_has_what_keda_requires():
    (so,) = by_kind("ScaledObject")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    spec = so["spec"]
    assert spec["scaleTargetRef"]["name"] and spec["triggers"]
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    for trigger in spec["triggers"]:
        assert trigger["type"] == "prometheus"
        assert trigger.get("metricType", "AverageValue") in {"AverageValue", "Value", "Utilization"}
        meta = trigger["metadata"]
        # keda.sh docs, Prometheus scaler: serverAddress, query and threshold are required; values are strings
        for key in ("serverAddress", "query", "threshold"):
            assert isinstance(meta.get(key), str) and meta[key].strip(), key
        float(meta["threshold"])
        assert meta["serverAddress"].startswith(("http://", "https://"))


def test_kserve_runtime_and_inference_service_fit_together():
    (runtime,) = by_kind("ServingRuntime")
    (isvc,) = by_kind("InferenceService")
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    formats = runtime["spec"]["supportedModelFormats"]
    assert formats and all(f["name"] for f in formats)
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container" and container["image"]  # the name KServe looks for
    args = " ".join(container["args"])
    # KServe's TorchServe layout: <storageUri>/config/config.properties and <storageUri>/model-store/
    assert "--model-store=/mnt/models/model-store" in args
    assert "--ts-config=/mnt/models/config/config.properties" in args
    assert "--foreground" in args
    # KServe sends traffic to 8080, where nginx (infkit.serve.core.front) listens, TorchServe's inference API behind it
    conf = properties((K8S / "kserve/config/config.properties").read_text())
    assert args.startswith("python3 -m infkit.serve.core.front --listen=0.0.0.0:8080 --upstream=127.0.0.1:")
    assert f"--upstream={conf['inference_address'].removeprefix('http://')} " in args
    assert f"--max-body={conf['max_request_size']} -- torchserve" in args
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] in {f["name"] for f in formats}
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["storageUri"].split("://")[0] in {"s3", "gs", "pvc", "https", "hdfs", "oci"}
    assert (K8S / "kserve/config/config.properties").is_file()


# -- references between the files ----------------------------------------------------------------------
def test_deployments_reference_what_exists():
    configmaps = {c["metadata"]["name"]: c["data"] for c in by_kind("ConfigMap")}
    secrets = {s["metadata"]["name"]: s["stringData"] for s in by_kind("Secret")}
    (service,) = by_kind("Service")
    for deployment in by_kind("Deployment"):
        pod = deployment["spec"]["template"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
        for volume in pod["spec"]["volumes"]:
            assert volume["configMap"]["name"] in configmaps
        for c in pod["spec"]["containers"]:
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                http = c.get(probe, {}).get("httpGet")
                if http:
                    assert http["port"] in ports
    for scaler in by_kind("ScaledObject") + by_kind("HorizontalPodAutoscaler"):
        assert scaler["spec"]["scaleTargetRef"]["name"] in {d["metadata"]["name"] for d in by_kind("Deployment")}


def test_in_the_pod_torchserve_listens_on_loopback_and_the_proxy_checks_the_key():
    conf = properties(one("ConfigMap", "infkit-torchserve-config")["data"]["config.properties"])
    assert conf["inference_address"].startswith("http://127.0.0.1:") and conf["grpc_inference_address"] == "127.0.0.1"
    assert conf["management_address"].startswith("http://127.0.0.1:") and conf["enable_model_api"] == "false"
    assert conf["metrics_mode"] == "prometheus" and conf["metrics_address"].endswith(":8082")
    port = conf["inference_address"].rsplit(":", 1)[1]
    template = one("ConfigMap", "infkit-auth-proxy")["data"]["default.conf.template"]
    assert f"server 127.0.0.1:{port};" in template and "proxy_pass http://torchserve;" in template
    assert '$http_authorization != "Bearer ${INFKIT_INFERENCE_KEY}"' in template
    # form-typed bodies (curl --data-binary) go on as raw bytes, as infkit.serve.core.front does; no X-Infkit-* header
    assert "proxy_set_header Content-Type $infkit_content_type;" in template and "X-Infkit" not in template
    # the image's front and the pod's proxy hold clients to the same limits
    from infkit.serve.core.front import Limits, nginx_conf

    front = nginx_conf(("0.0.0.0", 8080), ("127.0.0.1", int(port)), K8S, Limits(max_body=int(conf["max_request_size"])))
    for directive in (
        "client_max_body_size",
        "large_client_header_buffers",
        "client_header_timeout",
        "client_body_timeout",
        "keepalive_timeout",
        "proxy_request_buffering",
        "proxy_ignore_client_abort",
        "error_page 400",
    ):
        ours = {ln.strip() for ln in front.splitlines() if ln.strip().startswith(directive)}
        theirs = {ln.strip() for ln in template.splitlines() if ln.strip().startswith(directive)}
        assert ours and ours == theirs, (directive, ours, theirs)
    # an empty key in the committed Secret: the proxy must refuse to start with it
    assert one("Secret", "infkit-token-keys")["stringData"]["inference-key"] == ""
    for deployment in by_kind("Deployment"):
        proxy = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "auth-proxy")
        assert "-ge 16" in proxy["args"][0] and "exit 1" in proxy["args"][0]


def test_nginx_accepts_the_rendered_proxy_config(tmp_path):
    from infkit.serve.core.front import find_nginx

    nginx = find_nginx()
    assert nginx, "nginx is not installed here (apt-get install nginx-light): the front and this check need it"
    server = one("ConfigMap", "infkit-auth-proxy")["data"]["default.conf.template"]
    server = server.replace("${INFKIT_INFERENCE_KEY}", "a-test-key-of-24-characters")
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n"
        f"access_log off;\nclient_body_temp_path {tmp_path};\n{server}\n}}\n"
    )
    proc = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_neuron_deployment_asks_for_cores_and_one_worker_per_core():
    deployment = one("Deployment", "infkit-neuron")
    pod = deployment["spec"]["template"]["spec"]
    server = next(c for c in pod["containers"] if c["name"] == "torchserve")
    resources = server["resources"]
    cores = resources["limits"]["aws.amazon.com/neuroncore"]
    assert cores == resources["requests"]["aws.amazon.com/neuroncore"] and cores >= 1
    env = {e["name"]: e.get("value") for e in server.get("env", [])}
    assert env.get("NEURON_RT_NUM_CORES") == "1" and "NEURON_RT_VISIBLE_CORES" not in env
    assert any(t["key"] == "aws.amazon.com/neuron" for t in pod["tolerations"])


def test_pods_run_as_non_root():
    for deployment in by_kind("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
