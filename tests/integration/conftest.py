"""The live TorchServe the integration tests share: digits trained once, compiled with torchscript, onnx, onnx_int8 and
export, packaged with src/package.py and (torchscript) with the README's plain torch-model-archiver command, served
on free loopback ports for the whole session and stopped at its end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from infkit.package import run as package_stage
from infkit.resources import handler_file, model_config_file
from infkit.serve.core.config import ServerConfig
from infkit.serve.torchserve import server
from infkit.utils.compose import compose_config
from tests.conftest import compile_digits


def plain_archiver(artifact_dir: Path, model_name: str, store: Path) -> Path:
    """The README's hand-written torch-model-archiver command, run as a user would."""
    manifest = OmegaConf.load(artifact_dir / "manifest.json")
    artifact = artifact_dir / manifest.artifacts[0].file
    extra = [artifact_dir / "manifest.json", artifact_dir / manifest.eager_weights.file]
    cmd = [
        str(Path(sys.executable).with_name("torch-model-archiver")),
        "--model-name",
        model_name,
        "--version",
        "1.0",
        "--serialized-file",
        str(artifact),
        "--handler",
        str(handler_file()),
        "--extra-files",
        ",".join(map(str, extra)),
        "--config-file",
        str(model_config_file()),
        "--export-path",
        str(store),
    ]
    # the archiver stages in $TMPDIR/<model name>, deleting what is there: a folder of this test's own
    tmp = store.parent / f"archiver-tmp-{model_name}"
    tmp.mkdir(exist_ok=True)
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "TMPDIR": str(tmp)})
    return store / f"{model_name}.mar"


# the exact backends' session compiles are also what test_train_compile.py checks: parity at three batch sizes (one
# not a power of two) on 40 validation images, accuracy on the whole test split
EXACT_CHECKS = ("compile.batch_sizes=[1,3,8]", "parity.num_images=40")


@pytest.fixture(scope="session")
def onnx_compiled(digits_trained, tmp_path_factory) -> Path:
    """The compile run folder of the trained digits model with compile=onnx, once per session: checked in
    test_train_compile.py, run by the handler tests, served live, tuned, packaged and tampered with (as copies)."""
    return compile_digits(tmp_path_factory, digits_trained, "onnx", *EXACT_CHECKS).manifest_path.parent


@pytest.fixture(scope="session")
def torchscript_compiled(digits_trained, tmp_path_factory) -> Path:
    """The same with compile=torchscript: checked in test_train_compile.py, run by the handler tests, served live
    from the README's plain torch-model-archiver archive, packaged."""
    return compile_digits(tmp_path_factory, digits_trained, "torchscript", *EXACT_CHECKS).manifest_path.parent


@pytest.fixture(scope="session")
def running_server(tmp_path_factory, int8_compiled, export_compiled, onnx_compiled, torchscript_compiled):
    base = tmp_path_factory.mktemp("live")
    store = base / "model_store"
    store.mkdir()
    cfg = compose_config("package", [f"artifact_dir={onnx_compiled}", f"model_store={store}"], base / "package")
    models = {"onnx": package_stage.run(cfg).model_name, "torchscript": "digits_plain_torchscript"}
    plain_archiver(torchscript_compiled, models["torchscript"], store)
    # the session's int8 and AOTInductor artifacts of the same model, packaged by src/package.py with one worker
    # each (the two above run the default's workers): 2 cores serve the four models' workers
    for backend, result in (("onnx_int8", int8_compiled), ("export", export_compiled)):
        one_worker = ["serve.model.minWorkers=1", "serve.model.maxWorkers=1"]
        cfg = compose_config(
            "package",
            [f"artifact_dir={result.manifest_path.parent}", f"model_store={store}", *one_worker],
            base / f"package-{backend}",
        )
        models[backend] = package_stage.run(cfg).model_name
    srv = ServerConfig.from_mapping(
        OmegaConf.to_container(compose_config("serve", [], base).serve.server, resolve=True)
    ).with_free_ports()
    state_dir = base / "serve"
    state = server.start(srv, store, state_dir)
    yield {"state": state, "server": srv, "models": models, "state_dir": state_dir, "store": store}
    server.stop(state_dir)
