"""infkit demo / python src/demo.py (`make demo`): train -> compile every CPU backend -> package the fastest that passes
its guards -> TorchServe (or Ray Serve: --engine ray) on loopback -> live tests -> stop, on the embedded digits
data."""

from __future__ import annotations

import logging
import sys

from infkit.cli._common import guarded


@guarded
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    engine = "torchserve"
    if len(argv) == 2 and argv[0] == "--engine" and argv[1] in ("torchserve", "ray"):
        engine, argv = argv[1], []
    if argv:
        print(
            "usage: infkit demo [--engine torchserve|ray]   (it runs the whole pipeline on the embedded digits data; "
            "--engine: the serving engine, TorchServe by default)",
            file=sys.stderr,
        )
        return 2
    from infkit.demo import run

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("infkit").setLevel(logging.INFO)
    result = run(engine=engine)
    if result["failed"]:
        print(f"error: live tests failed for {', '.join(result['failed'])}", file=sys.stderr)
        return 1
    return 0
