"""A server whose model cannot load: start fails fast with the worker's reason and leaves nothing behind."""

import shutil
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from infkit.compile import manifest as mf
from infkit.compile import run as compile_stage
from infkit.errors import InfkitError
from infkit.package.run import archiver_command
from infkit.serve import server
from infkit.utils.compose import compose_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.serve]


def test_tampered_artifact_fails_start_with_the_reason(tiny_trained, tmp_path):
    out = tmp_path / "compiled"
    compile_stage.run(compose_config("trace", ["experiment=digits_example", f"ckpt_path={tiny_trained.best_ckpt}",
                                               "compile=onnx", "parity.num_images=8"], out))
    artifact = out / "digits_resnet18.onnx"
    artifact.write_bytes(artifact.read_bytes() + b"\0")  # the manifest's sha256 no longer matches
    store = tmp_path / "store"
    store.mkdir()
    # the archiver as src/package.py calls it, minus package.py's own sha256 check
    cmd = archiver_command("tampered", "1.0", out, mf.read(out), ROOT / "handlers/model-config.yaml", store)
    subprocess.run(cmd, check=True, capture_output=True)
    srv = OmegaConf.to_container(compose_config("serve", [], tmp_path).serve.server, resolve=True)
    srv.update(server.free_ports(), start_timeout=120)
    state_dir = tmp_path / "state"
    with pytest.raises(InfkitError, match="could not load its model.*sha256"):
        server.start(srv, store, state_dir)
    assert not server.status(state_dir)["running"]
    assert not (state_dir / "server.json").exists()
    shutil.rmtree(store)
