"""Every train/compile command the README shows composes to the configuration it promises: an experiment sets what it
names, and a plain `data=...` choice is never undone by a default experiment."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from infkit.resources import config_dir
from infkit.utils.compose import compose_config

ROOT = Path(__file__).resolve().parents[2]
ENTRIES = {"src/train.py": "train", "src/trace_inferentia.py": "trace"}


def readme_commands() -> list[tuple[str, list[str]]]:
    """(config name, overrides) of each README line that runs src/train.py or src/trace_inferentia.py."""
    found = []
    for line in (ROOT / "README.md").read_text().splitlines():
        for script, entry in ENTRIES.items():
            if f"python {script} " in line:
                line = re.sub(r"<[^>]*>", "<placeholder>", line)
                args = shlex.split(line.split(f"python {script} ", 1)[1].split("#", 1)[0].rstrip("\\ "))
                found.append((entry, [a for a in args if "=" in a]))
    return found


def expected_input_size(overrides: list[str]) -> list[int]:
    """What the README promises, read from the YAML files themselves: the experiment's data.input_size, else the
    chosen data config's, else the default data config's (digits)."""
    choice = dict(o.split("=", 1) for o in overrides)
    if "data.input_size" in choice:
        return yaml.safe_load(choice["data.input_size"])
    if "experiment" in choice:
        exp = yaml.safe_load((config_dir() / "experiment" / f"{choice['experiment']}.yaml").read_text())
        if "input_size" in exp.get("data", {}):
            return exp["data"]["input_size"]
    data = choice.get("data", "digits")
    return yaml.safe_load((config_dir() / "data" / f"{data}.yaml").read_text())["input_size"]


COMMANDS = readme_commands()


def test_the_readme_shows_the_commands_checked_here():
    assert len(COMMANDS) >= 4
    assert any("data=image_folder" in overrides for _, overrides in COMMANDS)


@pytest.mark.parametrize("entry, overrides", COMMANDS, ids=[" ".join(o) for _, o in COMMANDS])
def test_readme_command_composes_to_what_it_promises(entry, overrides, tmp_path):
    fixed = [re.sub(r"=(<[^>]*>|/path/to/\S+)$", f"={tmp_path}", o) for o in overrides]
    cfg = compose_config(entry, fixed, tmp_path)
    assert list(cfg.data.input_size) == expected_input_size(fixed)
    choice = dict(o.split("=", 1) for o in fixed)
    if "data" in choice:
        assert cfg.data.name == choice["data"]
    if "model.model_name" in choice:
        assert cfg.model.model_name == choice["model.model_name"]


def test_a_plain_data_choice_keeps_its_own_settings(tmp_path):
    cfg = compose_config("train", ["data=image_folder", f"data.root={tmp_path}"], tmp_path)
    folder = yaml.safe_load((config_dir() / "data" / "image_folder.yaml").read_text())
    assert list(cfg.data.input_size) == folder["input_size"] == [3, 224, 224]
    assert cfg.data.batch_size == folder["batch_size"]
    assert cfg.get("tags") == ["dev"]  # no experiment was applied
