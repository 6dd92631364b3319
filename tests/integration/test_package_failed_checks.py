"""Packaging reads the compile manifest's checks: an artifact whose parity or accuracy check failed is not packaged
(compilation refused it), unless allow_failed_checks=true says to, loudly."""

import json
import logging
import shutil

import pytest

from infkit.errors import InfkitError
from infkit.package import run as package_stage
from infkit.utils.compose import compose_config

pytestmark = pytest.mark.slow


def _failing_copy(onnx_compiled, tmp_path, check: str):
    artifact = tmp_path / "artifact"
    shutil.copytree(onnx_compiled, artifact)
    path = artifact / "manifest.json"
    manifest = json.loads(path.read_text())
    if check == "parity":
        manifest["parity"].update(passed=False, status="failed", top1_agreement=0.5)
    else:
        manifest["accuracy"].update(passed=False, status="failed", drop=0.25, compiled_top1=0.5, eager_top1=0.75)
    path.write_text(json.dumps(manifest))
    return artifact


@pytest.mark.parametrize("check, words", [("parity", "only 50.0 % of top-1"), ("accuracy", "loses 25.00 points")])
def test_an_artifact_that_failed_a_check_is_not_packaged(onnx_compiled, tmp_path, check, words):
    artifact = _failing_copy(onnx_compiled, tmp_path, check)
    store = tmp_path / "store"
    cfg = compose_config("package", [f"artifact_dir={artifact}", f"model_store={store}"], tmp_path / "run")
    with pytest.raises(InfkitError, match="not packaging") as err:
        package_stage.run(cfg)
    assert words in str(err.value) and "allow_failed_checks=true" in str(err.value)
    assert not store.exists() or not list(store.glob("*.mar"))


def test_allow_failed_checks_packages_it_with_a_warning(onnx_compiled, tmp_path, caplog):
    artifact = _failing_copy(onnx_compiled, tmp_path, "parity")
    cfg = compose_config(
        "package",
        [f"artifact_dir={artifact}", f"model_store={tmp_path / 'store'}", "allow_failed_checks=true"],
        tmp_path / "run",
    )
    with caplog.at_level(logging.WARNING, logger="infkit.package.run"):
        result = package_stage.run(cfg)
    assert result.mar.is_file()
    assert "failed its parity check" in caplog.text and "only 50.0 %" in caplog.text
