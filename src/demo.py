"""The main job end to end on the embedded default (what `make demo` runs)."""

import logging
import sys

from infkit.demo import run
from infkit.errors import InfkitError

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        run()
    except InfkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
