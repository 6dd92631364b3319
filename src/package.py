"""Package a compiled model for TorchServe: python src/package.py artifact_dir=<compile run folder>"""

import sys

from infkit.cli.package import main

if __name__ == "__main__":
    sys.exit(main())
