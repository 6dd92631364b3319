"""The packaging stage as a plain function: run(cfg) -> PackageResult (torch-model-archiver does the work)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from infkit.compile import manifest as mf
from infkit.compile import parity
from infkit.errors import InfkitError
from infkit.resources import handler_file
from infkit.serve.core import neuron_cores

log = logging.getLogger(__name__)


@dataclass
class PackageResult:
    mar: Path
    model_name: str
    command: list[str]
    #: what packaging warned about (e.g. more Neuron workers than the instance has NeuronCores)
    warnings: list[str] = field(default_factory=list)


def default_model_name(manifest: dict) -> str:
    return f"{manifest['name']}_{manifest['backend']}"


def archiver_command(
    model_name: str,
    version: str,
    artifact_dir: Path,
    manifest: dict,
    config_file: Path,
    export_path: Path,
    handler: Path | None = None,
) -> list[str]:
    """The torch-model-archiver call: first artifact as serialized file, the rest as extra files."""
    files = [artifact_dir / e["file"] for e in manifest["artifacts"]]
    handler = handler or handler_file()
    extra = [*files[1:], artifact_dir / mf.MANIFEST]
    if manifest.get("eager_weights"):
        extra.append(artifact_dir / manifest["eager_weights"]["file"])
    archiver = Path(sys.executable).with_name("torch-model-archiver")
    return [
        str(archiver if archiver.exists() else "torch-model-archiver"),
        "--model-name",
        model_name,
        "--version",
        str(version),
        "--serialized-file",
        str(files[0]),
        "--handler",
        str(handler),
        "--extra-files",
        ",".join(str(p) for p in extra),
        "--config-file",
        str(config_file),
        "--export-path",
        str(export_path),
        "--force",
    ]


def run(cfg: DictConfig) -> PackageResult:
    if not cfg.get("artifact_dir"):
        raise InfkitError("artifact_dir is not set; pass artifact_dir=<the folder src/trace_inferentia.py printed>")
    artifact_dir = Path(str(cfg.artifact_dir)).expanduser()
    if not artifact_dir.is_dir():
        raise InfkitError(f"artifact_dir {str(artifact_dir)!r} is not a directory; pass the compile run folder")
    manifest = mf.read(artifact_dir)
    mf.verify_artifacts(artifact_dir, manifest)
    failed_check(cfg, artifact_dir, manifest)
    name = str(cfg.get("model_name") or default_model_name(manifest))
    if not name.replace("_", "").replace("-", "").isalnum():
        raise InfkitError(f"model_name {name!r} may hold only letters, digits, '_' and '-'")
    store = Path(str(cfg.model_store))
    store.mkdir(parents=True, exist_ok=True)
    model_config = OmegaConf.to_container(cfg.serve.model, resolve=True)
    warnings = neuron_warnings(cfg, manifest, model_config)
    mar = store / f"{name}.mar"
    with tempfile.TemporaryDirectory() as tmp:
        config_file = Path(tmp) / "model-config.yaml"
        config_file.write_text(yaml.safe_dump(model_config, sort_keys=False))
        staging = Path(tmp) / "export"
        staging.mkdir()
        cmd = archiver_command(name, cfg.version, artifact_dir, manifest, config_file, staging)
        log.info("packaging %s (%s) ...", name, manifest["backend"])
        # the archiver stages files in $TMPDIR/<model name> and first deletes whatever is there: a private TMPDIR
        # keeps it from clobbering another packaging of the same name, or a folder it did not create
        env = {**os.environ, "TMPDIR": tmp, "TEMP": tmp, "TMP": tmp}
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0:  # what it half wrote stays in the temp folder; the store is untouched
            raise InfkitError(
                f"torch-model-archiver failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-400:]}"
            )
        built = staging / mar.name
        if not built.is_file():
            raise InfkitError(f"torch-model-archiver reported success but wrote no {mar.name}")
        # into the store under a temporary name, then renamed: a reader never sees half an archive
        part = store / f".{mar.name}.part"
        shutil.copyfile(built, part)
        os.replace(part, mar)
    return PackageResult(mar=mar, model_name=name, command=cmd, warnings=warnings)


def failed_check(cfg: DictConfig, artifact_dir: Path, manifest: dict) -> None:
    """Stop when the manifest records a parity or accuracy check that failed: compilation refused that artifact, so
    an archive of it would serve a model that is not the trained one. `allow_failed_checks=true` packages it anyway
    (for an experiment) and says so."""
    recorded = {k: manifest[k] for k in ("parity", "accuracy") if isinstance(manifest.get(k), dict)}
    failed = [k for k, r in recorded.items() if parity.status(r) == parity.FAILED]
    if not failed:
        return
    why = parity.failure(
        manifest["backend"], recorded.get("parity"), recorded.get("accuracy"), artifact_dir / mf.MANIFEST
    )
    if cfg.get("allow_failed_checks"):
        log.warning("packaging although the artifact failed its %s check: %s", " and ".join(failed), why)
        return
    raise InfkitError(
        f"not packaging {artifact_dir}: {why or ' and '.join(failed) + ' check failed'}. "
        "Compile again until the checks pass, or package it anyway with allow_failed_checks=true"
    )


def neuron_warnings(cfg: DictConfig, manifest: dict, model_config: dict) -> list[str]:
    """Neuron models: workers x NeuronCores per worker against serve.neuron.cores, and the layout (logged)."""
    layout = str((model_config.get("handler") or {}).get("neuron_layout", "per_worker"))
    neuron_cores.check_layout(layout, manifest)  # a bad value or data_parallel for a pipelined model stops here
    if not neuron_cores.is_neuron(manifest):
        return []
    neuron = OmegaConf.to_container(cfg.serve.neuron, resolve=True) if "neuron" in cfg.serve else {}
    warnings = neuron_cores.packaging_warnings(manifest, model_config, neuron.get("cores"))
    for line in warnings:
        log.warning("%s", line)
    return warnings
