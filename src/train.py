"""Train a timm classifier: python src/train.py experiment=digits_example [key=value ...]"""

import sys

from infkit.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
