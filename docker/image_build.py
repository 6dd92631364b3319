"""Building and checking the images for `make docker-test` (docker/docker_test.py): the engine, a BuildKit client
(for the CA-bundle secret), the build with its log, and the image's non-root user with no secret left in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
START_ENGINE = (
    "no Docker engine is reachable ({}); start one: `sudo systemctl start docker`, or where there is "
    "no service manager `sudo dockerd > /var/log/dockerd.log 2>&1 &` (Debian: apt-get install docker.io)"
)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, text=True, capture_output=True, check=False, **kw)


def check_engine(docker: str) -> None:
    if not shutil.which(docker):
        fail(f"no `{docker}` command on PATH; install Docker (Debian: apt-get install docker.io)")
    info = sh([docker, "info", "--format", "{{.ServerVersion}}"], timeout=30)
    if info.returncode != 0:
        fail(START_ENGINE.format((info.stderr.strip().splitlines() or ["docker info failed"])[-1]))
    print(f"Docker engine {info.stdout.strip()}", flush=True)


def buildkit_client(docker: str) -> tuple[list[str], dict]:
    """A client command that builds with BuildKit: `docker buildx build --load`, or a `docker` with BuildKit built
    in (clients before 23.0, e.g. Debian's docker.io) with DOCKER_BUILDKIT=1."""
    candidates = [docker] + [
        str(Path(d) / "docker") for d in os.environ.get("PATH", "").split(os.pathsep) if (Path(d) / "docker").is_file()
    ]
    for client in dict.fromkeys(candidates):
        if sh([client, "buildx", "version"]).returncode == 0:
            return [client, "buildx", "build", "--load"], {}
        version = sh([client, "version", "--format", "{{.Client.Version}}"]).stdout.strip()
        if version and version.split(".")[0].isdigit() and int(version.split(".")[0]) < 23:
            return [client, "build"], {"DOCKER_BUILDKIT": "1"}
    fail(
        "no Docker client here can build with BuildKit (needed for the CA-bundle secret): install the buildx "
        "plugin (Docker's docker-buildx-plugin package) or use a client with BuildKit built in (Debian's docker.io)"
    )


def build(docker: str, image: str, base: str, cuda_wheels: bool, dockerfile: str = "docker/Dockerfile.cpu") -> int:
    """Build `dockerfile` as `image`; returns its size in bytes. The log goes to logs/docker-test/build-<tag>.log."""
    cmd, env = buildkit_client(docker)
    ca = os.environ.get("SSL_CERT_FILE") or CA_BUNDLE
    secret = ["--secret", f"id=ca_bundle,src={ca}"] if Path(ca).is_file() else []
    args = [
        *cmd,
        "-f",
        str(ROOT / dockerfile),
        "-t",
        image,
        "--progress",
        "plain",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--build-arg",
        f"CUDA_WHEELS={str(cuda_wheels).lower()}",
        *secret,
        str(ROOT),
    ]
    print("$ " + " ".join(args), flush=True)
    t0 = time.monotonic()
    log = ROOT / "logs" / "docker-test" / f"build-{image.replace(':', '-').replace('/', '-')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.run(args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        fail(f"docker build failed; its log: {log}\n" + "".join(log.read_text().splitlines(True)[-25:]))
    size = int(sh([docker, "image", "inspect", "-f", "{{.Size}}", image]).stdout.strip())
    print(
        f"built {image} from {base} in {time.monotonic() - t0:.0f} s: {size / 1e9:.2f} GB ({size} bytes); log {log}",
        flush=True,
    )
    return size


def check_image(docker: str, image: str) -> None:
    """The image runs as a non-root user, and the CA bundle handed to the build as a secret is not in it."""
    uid = sh([docker, "run", "--rm", "--entrypoint", "id", image, "-u"]).stdout.strip()
    secrets = sh([docker, "run", "--rm", "--entrypoint", "/bin/sh", image, "-c", "ls -A /run/secrets 2>/dev/null"])
    if uid in ("", "0") or secrets.stdout.strip():
        fail(f"image {image}: user id {uid!r}, /run/secrets holds {secrets.stdout.split()}; expected non-root, empty")
    print(f"image runs as uid {uid}; no build secret left in it", flush=True)
