"""infkit demo / python src/demo.py (`make demo`): train -> compile every CPU backend -> package the fastest that passes
its guards -> TorchServe on loopback -> live tests -> stop, on the embedded digits data."""

from __future__ import annotations

import logging
import sys

from infkit.cli._common import guarded


@guarded
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv:
        print(
            "usage: infkit demo   (no arguments: it runs the whole pipeline on the embedded digits data)",
            file=sys.stderr,
        )
        return 2
    from infkit.demo import run

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("infkit").setLevel(logging.INFO)
    result = run()
    if result["failed"]:
        print(f"error: live tests failed for {', '.join(result['failed'])}", file=sys.stderr)
        return 1
    return 0
