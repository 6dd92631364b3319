"""The main job end to end on the embedded default (what `make demo` runs)."""

import sys

from infkit.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
