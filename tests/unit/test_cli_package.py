"""The `infkit` command: every stage is a main(argv) in infkit.cli, and each original script is a few lines over it."""

import importlib
from pathlib import Path

import pytest

from infkit import cli
from tests.conftest import ROOT


def test_help_lists_every_stage(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {stage} " in out for stage in cli.STAGES)


def test_no_stage_or_an_unknown_one_is_exit_2(capsys):
    assert cli.main([]) == 2
    assert cli.main(["tarin"]) == 2
    assert "unknown stage 'tarin'" in capsys.readouterr().err


@pytest.mark.parametrize("stage", list(cli.STAGES))
def test_each_stage_has_a_main_and_its_original_script_is_thin(stage):
    module_name, _, script = cli.STAGES[stage]
    assert callable(importlib.import_module(f"infkit.cli.{module_name}").main)
    text = (ROOT / script).read_text()
    assert f"from infkit.cli.{module_name} import main" in text
    assert len([ln for ln in text.splitlines() if ln.strip()]) <= 8, f"{script} should stay a thin wrapper"


def test_no_path_lookups_outside_the_resolver():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "src").rglob("*.py")
        if "parents[" in p.read_text() and p.name != "resources.py"
    ]
    assert offenders == []


def test_entry_scripts_exist_for_the_original_commands():
    for script in ("src/train.py", "src/trace_inferentia.py", "src/utils/benchmark.py"):
        assert Path(ROOT / script).is_file()
