"""infkit package / python src/package.py: a compiled artifact + manifest + handler -> model_store/<name>.mar."""

from __future__ import annotations

from infkit.cli._common import run_hydra
from infkit.utils.cli import log

GROUPS = ("serve",)


def task(cfg) -> None:
    from infkit.package.run import run

    result = run(cfg)
    log.info("model archive: %s (model name %s)", result.mar, result.model_name)


def main(argv: list[str] | None = None) -> int:
    return run_hydra("package.yaml", argv, task, GROUPS)
