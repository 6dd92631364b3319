"""Benchmark every backend in-process: python src/bench_model.py --model resnet18 --input-size 3 224 224"""

import sys

from infkit.cli.bench_model import main

if __name__ == "__main__":
    sys.exit(main())
