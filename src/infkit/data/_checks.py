"""Checks on user-given data locations, with errors that say the fix."""

from __future__ import annotations

import os
from pathlib import Path

from infkit.errors import InfkitError


def readable_dir(path: str | os.PathLike, what: str, hint: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise InfkitError(f"{what} {str(p)!r} does not exist; {hint}")
    if not p.is_dir():
        raise InfkitError(f"{what} {str(p)!r} is not a directory; {hint}")
    if not os.access(p, os.R_OK | os.X_OK):
        raise InfkitError(f"{what} {str(p)!r} is not readable (check its permissions); {hint}")
    return p
