"""Explain an image with a running server: python src/explain.py --model <name> --image <png> [--target 3]"""

import sys

from infkit.cli.explain import main

if __name__ == "__main__":
    sys.exit(main())
