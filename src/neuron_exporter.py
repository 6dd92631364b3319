"""neuron-monitor as Prometheus metrics: neuron-monitor | python src/neuron_exporter.py --port 9010"""

import sys

from infkit.cli.neuron_exporter import main

if __name__ == "__main__":
    sys.exit(main())
