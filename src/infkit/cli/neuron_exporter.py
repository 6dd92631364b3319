"""infkit neuron-exporter / python src/neuron_exporter.py: serve neuron-monitor's reports as Prometheus metrics
(the Neuron SDK exporter's names), on loopback by default.

    neuron-monitor | python src/neuron_exporter.py --port 9010
    neuron-monitor > nm.jsonl &  python src/neuron_exporter.py --port 9010 --input nm.jsonl   # follows the file

Then scrape http://127.0.0.1:9010/metrics. Lines that are not neuron-monitor reports are skipped with a
warning. Ctrl-C (or SIGTERM) stops it. Metric names: docs/neuron-monitor.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535), e.g. 9010")
    return port


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=port_number, default=9010, help="HTTP port for /metrics (default 9010)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: loopback only, for a Prometheus on this host)",
    )
    p.add_argument("--input", default="-", help="neuron-monitor's output: a file (followed) or - for stdin (default)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    from infkit.errors import InfkitError
    from infkit.monitor import prometheus
    from infkit.monitor.stream import Stream, check_source, warn_stderr

    try:
        check_source(args.input)
    except InfkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    exporter = prometheus.Exporter()

    def warn(message: str) -> None:
        exporter.skip()
        warn_stderr(message)

    def on_report(report) -> None:
        exporter.update(report)
        if exporter.reports == 1:
            print(
                f"first report: instance type {report.instance['instance_type'] or '(unknown)'}, "
                f"{len(report.runtimes)} Neuron runtime(s)",
                flush=True,
            )

    try:
        httpd = prometheus.serve(exporter, args.host, args.port)
    except OSError as exc:
        print(
            f"error: cannot listen on {args.host}:{args.port} ({exc.strerror}); choose another --port", file=sys.stderr
        )
        return 2
    source = "stdin" if args.input == "-" else args.input
    if args.input == "-" and sys.stdin.isatty():
        print("reading neuron-monitor reports from the terminal: pipe neuron-monitor into this script", file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    server = threading.Thread(target=httpd.serve_forever, daemon=True, name="metrics-http")
    server.start()
    stream = Stream(args.input, keep=False, on_report=on_report, warn=warn).start()
    print(
        f"serving neuron-monitor metrics from {source} on http://{args.host}:{args.port}/metrics (Ctrl-C stops)",
        flush=True,
    )
    try:
        stream.ended.wait()
        print(
            f"input ended after {exporter.reports} report(s); still serving the last values (Ctrl-C stops)", flush=True
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    stream.stop()
    httpd.shutdown()
    httpd.server_close()
    print(f"stopped: {exporter.reports} report(s) read, {exporter.skipped} line(s) skipped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
