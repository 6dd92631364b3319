"""tests/helpers/run_if.py: a missing component skips a test on a developer's machine and fails it under CI=true."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
from tests.helpers.run_if import run_if

@run_if(commands=["infkit-no-such-command"])
def test_needs_a_missing_command():
    pass

@run_if(cuda=True, commands=["sh"])
def test_situation_only():
    pass
"""


def _run(tmp_path, ci: str) -> subprocess.CompletedProcess:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    env = {"PATH": "/usr/bin:/bin", "CI": ci, "PYTHONPATH": str(ROOT)}
    # the probe lives outside tests/: the suite's conftest (the hook that fails the test) comes in as a plugin
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.conftest",
            "--rootdir",
            str(ROOT),
            "-c",
            str(ROOT / "pyproject.toml"),
            str(probe),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_missing_command_fails_under_ci_and_names_it(tmp_path):
    out = _run(tmp_path, "true")
    assert out.returncode == 1, out.stdout
    assert "CI=true and this test's component is missing: needs `infkit-no-such-command` on PATH" in out.stdout
    assert "1 error" in out.stdout and "1 skipped" in out.stdout  # no CUDA here is a situation: still skipped


def test_a_missing_command_skips_outside_ci(tmp_path):
    out = _run(tmp_path, "")
    assert out.returncode == 0 and "2 skipped" in out.stdout, out.stdout
