"""A wheel built from the repository stands alone: configs, handler, proto and sample images inside; the `infkit`
command and a config composition work from a fresh venv, outside the repository."""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy of the source tree, so setuptools' build/ and egg-info stay out of the checkout
    source = out / "source"
    shutil.copytree(
        ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "logs", "model_store", "build", "*.egg-info", "__pycache__", ".pytest_cache"
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (whl,) = out.glob("infkit-*.whl")
    return whl


def test_the_wheel_carries_configs_handler_proto_and_images(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "infkit/_data/configs/train.yaml",
        "infkit/_data/configs/serve/default.yaml",
        "infkit/_data/configs/compile/onnx.yaml",
        "infkit/_data/handlers/infkit_handler.py",
        "infkit/_data/handlers/model-config.yaml",
        "infkit/_data/proto/inference.proto",
        "infkit/_data/images/digits/0_6.png",
        "infkit/cli/__init__.py",
    ):
        assert needed in names, needed
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "infkit = infkit.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_works_outside_the_repository(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # the dependencies come from this environment's site-packages (as a plain path: its editable infkit link is not
    # followed); infkit itself only from the wheel
    (Path(purelib) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = subprocess.run(
        [python, "-c", "import infkit, infkit.resources as r; print(infkit.__file__); print(r.config_dir().resolve())"],
        cwd=outside,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert all(str(ROOT) not in w for w in where), where
    help_text = subprocess.run(
        [venv / "bin" / "infkit", "--help"], cwd=outside, check=True, capture_output=True, text=True
    ).stdout
    assert "stages:" in help_text and "train" in help_text and "serve" in help_text
    composed = subprocess.run(
        [
            python,
            "-c",
            "import json; from infkit.utils.compose import compose_config; "
            "cfg = compose_config('trace', ['experiment=digits_example', 'compile=onnx'], '.'); "
            "print(json.dumps({'size': list(cfg.data.input_size), 'backend': cfg.compile.backend}))",
        ],
        cwd=outside,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert json.loads(composed.strip().splitlines()[-1]) == {"size": [3, 32, 32], "backend": "onnx"}
    bad = subprocess.run(
        [venv / "bin" / "infkit", "train", "experiment=nope"], cwd=outside, capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown experiment 'nope'")
