"""serve/ is the engine-agnostic core, one subpackage per engine and the lifecycle interface between them
(infkit.serve.engine). What is checked here is the import graph, read from the source: the core imports no engine,
the engines do not import each other, and nothing outside serve/ (the CLI, demo, tune, the benchmark, the docker
tooling) reaches into an engine. The modules' old paths still import, as the same module objects."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SERVE = ROOT / "src" / "infkit" / "serve"
ENGINES = ("infkit.serve.torchserve", "infkit.serve.ray")


def imported(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (from-imports as module.name too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def reaching(files, packages) -> dict[str, list[str]]:
    found = {}
    for f in files:
        bad = sorted(m for m in imported(f) if any(m == p or m.startswith(p + ".") for p in packages))
        if bad:
            found[str(f.relative_to(ROOT))] = bad
    return found


def test_the_core_imports_no_engine():
    files = sorted((SERVE / "core").glob("*.py"))
    assert len(files) > 10
    assert reaching(files, (*ENGINES, "infkit.serve.engine")) == {}


def test_the_engines_do_not_import_each_other():
    assert reaching(sorted((SERVE / "torchserve").glob("*.py")), ("infkit.serve.ray",)) == {}
    assert reaching(sorted((SERVE / "ray").rglob("*.py")), ("infkit.serve.torchserve",)) == {}


def test_the_cli_demo_tune_bench_and_docker_tooling_use_the_interface_only():
    outside = [p for p in (ROOT / "src" / "infkit").rglob("*.py") if SERVE not in p.parents]
    outside += sorted((ROOT / "docker").glob("*.py"))
    assert len(outside) > 30
    assert reaching(outside, ENGINES) == {}


@pytest.mark.parametrize("old", ["service", "decode", "front", "config", "process", "server", "logs", "java"])
def test_the_old_module_paths_are_the_same_modules(old):
    from infkit.serve import MOVED

    module = importlib.import_module(f"infkit.serve.{old}")
    assert module is importlib.import_module(MOVED[old]) and module.__name__ == MOVED[old]
    assert module.__spec__.name == MOVED[old] and module.__spec__.origin == module.__file__
    assert getattr(importlib.import_module("infkit.serve"), old) is module


def test_every_moved_module_is_where_the_alias_says():
    from infkit.serve import MOVED

    here = {p.stem for p in SERVE.glob("*.py")}
    assert not here & set(MOVED), "a module both at its old place and moved"
    for new in MOVED.values():
        assert (ROOT / "src" / Path(*new.split("."))).with_suffix(".py").is_file(), new


def test_the_front_still_runs_by_its_old_name():
    """The images of earlier releases run `python3 -m infkit.serve.front ...`."""
    done = subprocess.run(
        [sys.executable, "-m", "infkit.serve.front", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "--upstream" in done.stdout, done.stderr[-2000:]
