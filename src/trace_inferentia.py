"""Compile a trained checkpoint:
python src/trace_inferentia.py experiment=digits_example ckpt_path=<ckpt> [compile=onnx]"""

import sys

from infkit.cli.trace import main

if __name__ == "__main__":
    sys.exit(main())
