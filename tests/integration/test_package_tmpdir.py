"""torch-model-archiver stages an archive in $TMPDIR/<model name> and deletes whatever is there first; packaging
gives it a private TMPDIR, so a folder of that name that someone else owns (or a concurrent packaging of the same
model) is left alone."""

import pytest

from infkit.package import run as package_stage
from infkit.utils.compose import compose_config

pytestmark = pytest.mark.slow


def test_packaging_leaves_a_same_named_folder_in_the_temp_dir_alone(torchscript_compiled, tmp_path, monkeypatch):
    system_tmp = tmp_path / "system-tmp"
    theirs = system_tmp / "digits_tmpdir_check"
    theirs.mkdir(parents=True)
    (theirs / "keep.txt").write_text("not the archiver's")
    monkeypatch.setenv("TMPDIR", str(system_tmp))  # what the archiver subprocess would inherit

    cfg = compose_config(
        "package",
        [f"artifact_dir={torchscript_compiled}", f"model_store={tmp_path / 'store'}", "model_name=digits_tmpdir_check"],
        tmp_path / "package",
    )
    result = package_stage.run(cfg)

    assert result.mar.is_file()
    assert (theirs / "keep.txt").read_text() == "not the archiver's"
