"""The .mar files a server is asked to load, read before TorchServe starts: which exist, which are readable archives,
and the settings of each that the server needs (minWorkers to wait for, the handler's image-size limit)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from infkit.errors import InfkitError
from infkit.serve.core.decode import DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class Archive:
    path: Path
    min_workers: int = 1
    max_image_bytes: int = DEFAULT_MAX_BYTES
    #: seconds TorchServe gives a worker for one answer (model-config.yaml's responseTimeout; its default 120)
    response_timeout: int = 120


def read_archive(path: Path) -> Archive:
    """The archive's settings; InfkitError naming what is wrong when it is not a readable model archive."""
    try:
        with zipfile.ZipFile(path) as mar:
            bad = mar.testzip()
            if bad is not None:
                raise InfkitError(f"member {bad!r} is corrupt (CRC mismatch)")
            try:
                meta = json.loads(mar.read("MAR-INF/MANIFEST.json"))
            except KeyError:
                raise InfkitError("it has no MAR-INF/MANIFEST.json: not made by torch-model-archiver") from None
            config_name = (meta.get("model") or {}).get("configFile")
            config = yaml.safe_load(mar.read(config_name)) if config_name in mar.namelist() else {}
    except InfkitError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, yaml.YAMLError) as exc:
        raise InfkitError(f"not a readable model archive ({type(exc).__name__}: {exc}); package it again") from None
    config = config if isinstance(config, dict) else {}
    handler = config.get("handler") if isinstance(config.get("handler"), dict) else {}
    return Archive(
        path=Path(path),
        min_workers=int(config.get("minWorkers") or 1),
        max_image_bytes=int(handler.get("max_image_bytes") or DEFAULT_MAX_BYTES),
        response_timeout=int(config.get("responseTimeout") or 120),
    )


def check_models(model_store: Path, models: list[str]) -> tuple[dict[str, Archive], dict[str, str]]:
    """({name: Archive} that can be served, {name: reason} that cannot) for the named models, or for every .mar
    in the store when none are named."""
    store = Path(model_store)
    if not store.is_dir():
        raise InfkitError(
            f"model store {str(store)!r} does not exist; package a model first with src/package.py "
            "or pass model_store=<folder with .mar files>"
        )
    available = sorted(p.stem for p in store.glob("*.mar"))
    if not available:
        raise InfkitError(f"no .mar files in {str(store)!r}; package a model first with src/package.py")
    unknown = [m for m in models if m not in available]
    if unknown:
        raise InfkitError(f"model(s) {', '.join(unknown)} not in {store}; available: {', '.join(available)}")
    archives, failed = {}, {}
    for name in models or available:
        try:
            archives[name] = read_archive(store / f"{name}.mar")
        except InfkitError as exc:
            failed[name] = str(exc)
    return archives, failed
