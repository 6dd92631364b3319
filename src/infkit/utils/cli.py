"""What every Hydra entry script shares: choices checked up front, InfkitError as one line + exit 2."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from infkit.errors import InfkitError
from infkit.resources import config_dir as config_dir_default

log = logging.getLogger("infkit")


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def check_group_choices(argv: list[str], groups: tuple[str, ...], config_dir: Path | None = None) -> None:
    """`experiment=nope` or `compile=nope` -> one line naming the options, before Hydra starts."""
    config_dir = Path(config_dir or config_dir_default())
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in groups or value in ("", "null"):
            continue
        options = sorted(p.stem for p in (config_dir / key).glob("*.yaml"))
        if value not in options:
            fail(f"unknown {key} {value!r}; choose one of: {', '.join(options)} (or add configs/{key}/{value}.yaml)")


def user_error(exc: BaseException) -> InfkitError | None:
    """The InfkitError behind exc, also when a library wrapped it (hydra.utils.instantiate does)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, InfkitError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def report_errors(task: Callable) -> Callable:
    """Turn InfkitError raised inside a Hydra task into one line on stderr and exit status 2."""

    @functools.wraps(task)
    def wrapper(*args, **kwargs):
        try:
            return task(*args, **kwargs)
        except Exception as exc:
            cause = user_error(exc)
            if cause is None:
                raise
            fail(str(cause))

    return wrapper
