"""Load-test a served model (the original project's benchmark command):
python src/utils/benchmark.py --url http://127.0.0.1:8080/predictions/<model> --num_thread 64"""

import sys

from infkit.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
