"""Find the serving configuration that meets a latency budget: python src/tune.py <compile run folder> --p99-ms 50"""

import sys

from infkit.cli.tune import main

if __name__ == "__main__":
    sys.exit(main())
