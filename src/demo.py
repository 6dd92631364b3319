"""The main job end to end on the embedded default (what `make demo` runs)."""

import logging
import sys

from infkit.demo import run
from infkit.errors import InfkitError

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("infkit").setLevel(logging.INFO)
    try:
        result = run()
    except InfkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if result["failed"]:
        print(f"error: live tests failed for {', '.join(result['failed'])}", file=sys.stderr)
        sys.exit(1)
