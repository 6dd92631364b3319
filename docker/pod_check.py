"""The pod of k8s/deployment-cpu.yaml, reproduced on one Docker host (part of `make docker-test`).

TorchServe runs from the image with the ConfigMap's config.properties (inference on the loopback, its own token
check off); the auth proxy's nginx template from the same ConfigMap, rendered with a fresh key, runs in the
container's network namespace, as the auth-proxy container shares the pod's. Then: the proxy's refusals (no key,
wrong key, management paths), and tests/test_serve's REST tests through the proxy with the key. Needs root, nginx
and nsenter on the host; without them it says so and is skipped.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]


def sh(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, text=True, capture_output=True, check=False)


def pod_files() -> tuple[str, str]:
    """config.properties and the nginx template, from k8s/configmap.yaml."""
    maps = {d["metadata"]["name"]: d["data"] for d in yaml.safe_load_all((ROOT / "k8s/configmap.yaml").read_text())}
    return maps["infkit-torchserve-config"]["config.properties"], maps["infkit-auth-proxy"]["default.conf.template"]


def nginx_conf(template: str, key: str, tmp: Path) -> Path:
    for sub in ("body", "proxy"):
        (tmp / sub).mkdir(mode=0o777)
        (tmp / sub).chmod(0o777)  # nginx's workers run as an unprivileged user
    server = template.replace("${INFKIT_INFERENCE_KEY}", key)
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\nhttp {{\naccess_log off;\n"
        f"client_body_temp_path {tmp}/body;\nproxy_temp_path {tmp}/proxy;\n{server}\n}}\n"
    )
    return conf


def wait(check, what: str, timeout: float = 300.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            print(f"  {what} after {time.monotonic() - t0:.0f} s", flush=True)
            return
        time.sleep(2)
    raise RuntimeError(f"{what}: not after {timeout:.0f} s")


def refusals(base: str, model: str, image: bytes) -> list[str]:
    """What the proxy must refuse; returns the problems found."""
    problems = []
    for headers in ({}, {"Authorization": "Bearer not-the-key"}):
        r = requests.post(f"{base}/predictions/{model}", data=image, headers=headers, timeout=60)
        if r.status_code != 401 or "Token Authorization failed" not in r.text:
            problems.append(f"{headers or 'no key'}: {r.status_code} {r.text[:100]}")
    for path in ("/models", "/token?type=inference", "/metrics"):
        r = requests.get(base + path, timeout=30)
        if r.status_code != 404:
            problems.append(f"GET {path} through the proxy: {r.status_code}, expected 404")
    return problems


def run(docker: str, image: str, store: Path, model: str, ports: dict[str, int]) -> int | None:
    """0 when everything passed, 1 when something failed, None when skipped."""
    nginx, nsenter = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin"), shutil.which("nsenter")
    if not (nginx and nsenter and os.geteuid() == 0):
        print("pod check skipped: it needs root, nginx and nsenter (apt-get install nginx-light util-linux)")
        return None
    config, template = pod_files()
    key = secrets.token_hex(16)
    http, metrics = ports["inference_port"], ports["metrics_port"]
    name = f"infkit-pod-check-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="infkit-pod-check-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)
        (tmp / "config.properties").write_text(config)
        cmd = [
            docker,
            "run",
            "-d",
            "--name",
            name,
            "-p",
            f"127.0.0.1:{http}:8080",
            "-p",
            f"127.0.0.1:{metrics}:8082",
            "-v",
            f"{store}:/home/model-server/model-store:ro",
            "-v",
            f"{tmp / 'config.properties'}:/etc/infkit/config.properties:ro",
            image,
            "torchserve",
            "--start",
            "--foreground",
            "--ncs",
            "--ts-config",
            "/etc/infkit/config.properties",
        ]
        print("pod check: TorchServe with k8s/configmap.yaml's config.properties, nginx in its network namespace")
        print("$ " + " ".join(cmd), flush=True)
        started = sh(cmd)
        if started.returncode != 0:
            print(f"pod check: docker run failed: {started.stderr.strip()}")
            return 1
        proxy = None
        try:
            probe = [docker, "exec", name, "python3", "/opt/infkit-tools/healthcheck.py", "8085"]  # the k8s probes
            wait(lambda: sh(probe).returncode == 0, "TorchServe answers /ping on the pod's loopback (the probes)")
            pid = sh([docker, "inspect", "-f", "{{.State.Pid}}", name]).stdout.strip()
            proxy = subprocess.Popen(
                [
                    nsenter,
                    "-t",
                    pid,
                    "-n",
                    nginx,
                    "-c",
                    str(nginx_conf(template, key, tmp)),
                    "-p",
                    str(tmp),
                    "-g",
                    "daemon off;",
                ],
                stderr=subprocess.PIPE,
                text=True,
            )
            base = f"http://127.0.0.1:{http}"
            wait(lambda: _ok(base + "/ping"), "the proxy passes /ping through", timeout=60)
            digit = min((ROOT / "tests/resources/digits").glob("*.png")).read_bytes()
            problems = refusals(base, model, digit)
            print(
                "  refusals:",
                "; ".join(problems)
                if problems
                else "no key and a wrong key get 401, management, token and metrics paths 404",
                flush=True,
            )
            tests = [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/test_serve",
                "--ignore",
                "tests/test_serve/test_serve_grpc.py",
                "--public_ip",
                "127.0.0.1",
                "--model",
                model,
                "--dataset",
                "digits",
                "--http-port",
                str(http),
                "--metrics-port",
                str(metrics),
                "--token",
                key,
            ]
            print("$ " + " ".join([*tests[:-1], "<key>"]), flush=True)
            result = subprocess.run(tests, cwd=ROOT, text=True, capture_output=True, check=False)
            print(result.stdout[-2500:], result.stderr[-1500:], sep="", flush=True)
            summary = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
            print(f"pod check: {summary} through the auth proxy (REST; gRPC is not proxied)", flush=True)
            return 1 if problems or result.returncode else 0
        except RuntimeError as exc:
            print(f"pod check failed: {exc}\n{sh([docker, 'logs', '--tail', '20', name]).stdout[-3000:]}")
            return 1
        finally:
            if proxy:
                proxy.terminate()
                proxy.wait(timeout=30)
            removed = sh([docker, "rm", "-f", name])
            print(
                f"stopped nginx and removed container {name}"
                if removed.returncode == 0
                else f"warning: could not remove container {name}: {removed.stderr.strip()}",
                flush=True,
            )


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False
