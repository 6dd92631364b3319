"""The base image for docker/Dockerfile.cpu: BASE_IMAGE from the environment, else python:3.11-slim-bookworm when the
engine has it or can pull it, else a Debian 12 minbase with Python 3.11 made here with debootstrap and
`docker import` (docs/deployment.md, "Building without a registry"). Used by docker_test.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

PUBLIC_BASE = "python:3.11-slim-bookworm"
LOCAL_BASE = "infkit-base:bookworm"


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, text=True, capture_output=True, check=False, **kw)


def base_image(docker: str, fail) -> str:
    """The image to build on; `fail(message)` stops with a one-line error."""
    chosen = os.environ.get("BASE_IMAGE")
    if chosen:
        return chosen
    for image in (PUBLIC_BASE, LOCAL_BASE):
        if sh([docker, "image", "inspect", image]).returncode == 0:
            print(f"base image {image} (already in the engine)", flush=True)
            return image
    pulled = sh([docker, "pull", PUBLIC_BASE], timeout=600)
    if pulled.returncode == 0:
        return PUBLIC_BASE
    print(
        f"cannot pull {PUBLIC_BASE} ({pulled.stderr.strip()[:160]}); making {LOCAL_BASE} with debootstrap", flush=True
    )
    return make_local_base(docker, fail)


def make_local_base(docker: str, fail) -> str:
    """Debian 12 minbase with Python 3.11 from Debian's archive (debootstrap) -> `docker import`."""
    if not shutil.which("debootstrap"):
        fail("no registry and no debootstrap: apt-get install debootstrap (or pass BASE_IMAGE=<a local image>)")
    if os.geteuid() != 0:
        fail("debootstrap needs root: run `sudo make docker-test`, or pass BASE_IMAGE=<a local Debian 12 image>")
    mirror = [os.environ["DEBIAN_MIRROR"]] if os.environ.get("DEBIAN_MIRROR") else []
    with tempfile.TemporaryDirectory(prefix="infkit-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        t0 = time.monotonic()
        print("debootstrap --variant=minbase --include=python3,python3-venv bookworm (a few minutes) ...", flush=True)
        run = sh(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv", "bookworm", str(rootfs), *mirror],
            timeout=1800,
        )
        if run.returncode != 0:
            fail(f"debootstrap failed: {run.stdout.strip().splitlines()[-1:]} {run.stderr.strip()[-300:]}")
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / leftover).glob("*.deb" if "archives" in leftover else "*_*"):
                item.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [docker, "import", "--change", 'CMD ["/bin/bash"]', "-", LOCAL_BASE],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            fail(f"docker import failed: {imported.stderr.strip()[-300:]}")
    print(f"made {LOCAL_BASE} in {time.monotonic() - t0:.0f} s", flush=True)
    return LOCAL_BASE
