"""Soak a running server: python src/soak.py --url http://127.0.0.1:8080/predictions/<model> --minutes 30"""

import sys

from infkit.cli.soak import main

if __name__ == "__main__":
    sys.exit(main())
