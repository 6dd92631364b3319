"""What every stage's command shares: one error style ("error: <what and the fix>", exit 2) and the Hydra runner."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

from infkit.errors import InfkitError
from infkit.utils.cli import check_group_choices, report_errors


def guarded(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """main(argv) with InfkitError (also when a library wrapped it) turned into one line on stderr and exit 2."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        from infkit.utils.cli import user_error

        try:
            return int(main(argv) or 0)
        except Exception as exc:
            cause = exc if isinstance(exc, InfkitError) else user_error(exc)
            if cause is None:
                raise
            print(f"error: {cause}", file=sys.stderr)
            return 2

    return wrapper


def run_hydra(config_name: str, argv: list[str] | None, task: Callable, groups: tuple[str, ...]) -> int:
    """Run `task(cfg)` as a Hydra app on the packaged configs with these overrides — exactly what the original
    `@hydra.main` scripts did: a run folder under logs/<task>/runs/<time>, Hydra's logging, --help, --cfg, -m."""
    import hydra

    from infkit.resources import config_dir

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        check_group_choices(argv, groups)
    except SystemExit as exc:  # check_group_choices has already printed the one line
        return int(exc.code or 2)

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=config_name)
    @report_errors
    def app(cfg) -> None:
        task(cfg)

    saved = sys.argv
    # the job is named for the stage (as the original scripts were), not for this module
    sys.argv = [saved[0] if saved else config_name, f"hydra.job.name={config_name.removesuffix('.yaml')}", *argv]
    try:
        app()
    except SystemExit as exc:  # report_errors' exit 2, or Hydra's own (--help, bad override)
        if exc.code not in (None, 0):
            return int(exc.code) if isinstance(exc.code, int) else 1
    finally:
        sys.argv = saved
    return 0
