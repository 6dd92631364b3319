"""TorchServe's token authorization: the key file it writes at start, and the one Authorization header builder that
the load generator, the gRPC client, the explain command and the live tests all use."""

from __future__ import annotations

import json
from pathlib import Path

KEY_FILE = "key_file.json"


def read_keys(key_file: Path) -> dict[str, str]:
    """{'inference': key, 'management': key} from TorchServe's key file; {} when there is none (token
    auth off) or it is not fully written yet."""
    try:
        data = json.loads(Path(key_file).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {
        kind: data[kind]["key"]
        for kind in ("inference", "management")
        if isinstance(data.get(kind), dict) and "key" in data[kind]
    }


def inference_token(key_file: Path) -> str | None:
    """The inference key clients send as `Authorization: Bearer <key>`, or None."""
    return read_keys(key_file).get("inference")


def auth_header(key: str | None) -> dict[str, str]:
    """{'Authorization': 'Bearer <key>'}, or {} without a key (token authorization off)."""
    return {"Authorization": f"Bearer {key}"} if key else {}
