"""manifest.json: what travels with every compiled artifact (DESIGN.md, 'The manifest is the contract')."""

from __future__ import annotations

import hashlib
import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from infkit.errors import InfkitError

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
REQUIRED = ("backend", "artifacts", "input_size", "mean", "std", "labels")


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def library_versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("infkit", "torch", "torchvision", "timm", "lightning", "onnx", "onnxruntime"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    out.update(extra or {})
    return out


def artifact_entry(path: Path, batch_size: int | None) -> dict[str, Any]:
    return {"file": path.name, "sha256": sha256(path), "bytes": path.stat().st_size, "batch_size": batch_size}


def write(directory: Path, manifest: dict[str, Any]) -> Path:
    path = Path(directory) / MANIFEST
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION, **manifest}, indent=2) + "\n")
    return path


def read(path: Path) -> dict[str, Any]:
    """Read and check a manifest (a file, or a directory holding manifest.json)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InfkitError(f"no manifest at {str(path)!r}; compile first with src/trace_inferentia.py") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InfkitError(f"manifest {str(path)!r} is not readable JSON ({exc}); compile again") from None
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise InfkitError(f"manifest {str(path)!r} lacks {', '.join(missing)}; compile again with this infkit")
    return data


def verify_artifacts(directory: Path, manifest: dict[str, Any]) -> None:
    """Every artifact the manifest lists is present with the recorded sha256."""
    for entry in manifest["artifacts"]:
        path = Path(directory) / entry["file"]
        if not path.is_file():
            raise InfkitError(f"artifact {entry['file']!r} named in the manifest is missing from {directory}")
        digest = sha256(path)
        if digest != entry["sha256"]:
            raise InfkitError(
                f"artifact {entry['file']!r} has sha256 {digest[:12]}…, the manifest says "
                f"{entry['sha256'][:12]}…: the file changed after compilation; compile again"
            )
