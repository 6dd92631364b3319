"""tests/helpers/run_if.py: a missing component skips a test on a developer's machine and fails it under CI=true."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, Ran

PROBE = """
from tests.helpers.run_if import run_if

@run_if(commands=["infkit-no-such-command"])
def test_needs_a_missing_command():
    pass

@run_if(cuda=True, commands=["sh"])
def test_situation_only():
    pass
"""


def _run(tmp_path, monkeypatch, capsys, ci: str) -> Ran:
    """The probe through pytest in this process (a session of its own), with CI=`ci` and a PATH without infkit's."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    capsys.readouterr()
    # the probe lives outside tests/: the suite's conftest (the hook that fails the test) comes in as a plugin;
    # importlib mode: each run imports the probe afresh, so its markers are built under this run's CI
    code = pytest.main(
        [
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.conftest",
            "--import-mode=importlib",
            "--rootdir",
            str(ROOT),
            "-c",
            str(ROOT / "pyproject.toml"),
            str(probe),
        ]
    )
    return Ran(int(code), capsys.readouterr().out, "")


def test_a_missing_command_fails_under_ci_and_names_it(tmp_path, monkeypatch, capsys):
    out = _run(tmp_path, monkeypatch, capsys, "true")
    assert out.returncode == 1, out.stdout
    assert "CI=true and this test's component is missing: needs `infkit-no-such-command` on PATH" in out.stdout
    assert "1 error" in out.stdout and "1 skipped" in out.stdout  # no CUDA here is a situation: still skipped


def test_a_missing_command_skips_outside_ci(tmp_path, monkeypatch, capsys):
    out = _run(tmp_path, monkeypatch, capsys, "")
    assert out.returncode == 0 and "2 skipped" in out.stdout, out.stdout
