"""Run TorchServe on loopback: python src/serve.py start|stop|status [serve.server.inference_port=9080 ...]"""

import sys

from infkit.cli.serve import main

if __name__ == "__main__":
    sys.exit(main())
