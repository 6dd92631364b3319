"""infkit trace / python src/trace_inferentia.py: compile a trained checkpoint, check it, write the manifest."""

from __future__ import annotations

from infkit.cli._common import run_hydra
from infkit.utils.cli import log

GROUPS = ("experiment", "data", "model", "compile")


def task(cfg) -> None:
    from infkit.compile.run import run

    result = run(cfg)
    for path in result.artifacts:
        log.info("artifact: %s", path)
    log.info("manifest: %s", result.manifest_path)


def main(argv: list[str] | None = None) -> int:
    return run_hydra("trace.yaml", argv, task, GROUPS)
