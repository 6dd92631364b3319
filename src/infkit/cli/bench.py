"""Load-test a TorchServe endpoint: closed or open loop, one level or a sweep, with the server-side split.

closed loop:  python src/utils/benchmark.py --url http://127.0.0.1:8080/predictions/<model> --num_thread 64
              (--processes N spreads the clients over N client processes; default: one per 16 clients, up to the
              usable cores)
open loop:    python src/utils/benchmark.py --url ... --rate 50 [--arrivals poisson]
sweep:        python src/utils/benchmark.py --url ... --sweep 1,2,4,8,16      (concurrencies; with --rate: rates)
Inferentia:   neuron-monitor | python src/utils/benchmark.py --url ... --neuron-monitor -   (or a file it writes to)

cost:         python src/utils/benchmark.py --url ... --instance c7i.xlarge   (or --price-per-hour 0.17)

Throughput counts successful (2xx) answers only; errors are reported beside it by status with the error rate and
the first error's text. A level whose error rate is above --max-error-rate (default 1 %) is failed. Results (JSON,
CSV, PNG) land in logs/bench/<time>/, with the machine's load before and after the run and each level. Ctrl-C stops
and still writes what was measured.

Exit status: 0 when every level passed, 1 when a level failed (every request failing names the first error),
2 for bad arguments, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from infkit.bench import busy, console, cost, loadgen, report
from infkit.bench.machine import machine_info
from infkit.bench.runner import LevelSpec, sweep
from infkit.bench.stats import CPU_LIMIT, MAX_ERROR_RATE
from infkit.errors import InfkitError
from infkit.resources import sample_images
from infkit.serve.core.auth import inference_token
from infkit.utils.argtypes import fraction, parse_levels, positive, processes, share


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--url", required=True, help="prediction URL, e.g. http://127.0.0.1:8080/predictions/digits_resnet18_onnx"
    )
    p.add_argument("--num_thread", type=positive(int), default=64, help="closed loop: concurrent clients (default 64)")
    p.add_argument("--rate", type=positive(float), default=None, help="open loop: requests per second")
    p.add_argument("--arrivals", choices=("constant", "poisson"), default="constant", help="open loop arrivals")
    p.add_argument("--workers", type=positive(int), default=64, help="open loop: sender threads (default 64)")
    p.add_argument(
        "--processes",
        type=processes,
        default=None,
        metavar="N|auto",
        help="client processes sharing the load, each with keep-alive connections (default auto: one per "
        "16 clients or 1000 req/s, up to the usable cores)",
    )
    p.add_argument(
        "--client-cpu-limit",
        "--client_cpu_limit",
        dest="client_cpu_limit",
        type=fraction,
        default=CPU_LIMIT,
        metavar="F",
        help="warn that the client was the bottleneck when it used this fraction of its cores, or one "
        f"process this fraction of a core (default {CPU_LIMIT})",
    )
    p.add_argument(
        "--sweep",
        type=parse_levels,
        default=None,
        help="levels to sweep: concurrencies, or rates with --rate given (e.g. 1,2,4,8)",
    )
    p.add_argument(
        "--images",
        nargs="+",
        type=Path,
        default=None,
        help="image files to send in turn (default: every tests/resources/*/*.png)",
    )
    p.add_argument("--duration", type=positive(float), default=30.0, help="measured seconds per level, at most")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds excluded from the results (default 5)")
    p.add_argument("--interval", type=positive(float), default=5.0, help="seconds between progress lines")
    p.add_argument("--window", type=positive(float), default=5.0, help="sweep: window length in seconds")
    p.add_argument(
        "--stable-windows",
        "--stable_windows",
        dest="stable_windows",
        type=int,
        default=3,
        help="sweep: stop a level when this many windows agree",
    )
    p.add_argument("--tolerance", type=positive(float), default=0.1, help="sweep: relative agreement (default 0.1)")
    p.add_argument(
        "--key-file",
        "--key_file",
        dest="key_file",
        type=Path,
        default=Path("logs/serve/key_file.json"),
        help="TorchServe key file (token authorization), as src/serve.py writes it",
    )
    p.add_argument("--token", default=None, help="inference token (overrides --key-file)")
    p.add_argument(
        "--metrics-url",
        "--metrics_url",
        dest="metrics_url",
        default=None,
        help="TorchServe metrics URL for the server-side split (default: same host, port 8082; 'none' to skip)",
    )
    p.add_argument("--timeout", type=positive(float), default=60.0, help="per-request timeout in seconds")
    p.add_argument(
        "--max-error-rate",
        type=share,
        default=MAX_ERROR_RATE,
        metavar="F",
        help=f"a level with a larger share of failed requests is failed (default {MAX_ERROR_RATE})",
    )
    cost.add_arguments(p)
    p.add_argument(
        "--neuron-monitor",
        dest="neuron_monitor",
        default=None,
        metavar="FILE|-",
        help="neuron-monitor's JSON stream (a file it writes to, or - for stdin): adds NeuronCore "
        "utilisation, memory and runtime latency per level",
    )
    p.add_argument("--out", type=Path, default=Path("logs/bench"), help="results go to <out>/<time>/")
    return p


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    url = urlparse(args.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        return fail(f"--url {args.url!r} is not an http URL; e.g. http://127.0.0.1:8080/predictions/<model>")
    images = args.images or sample_images()
    missing = [str(p) for p in images if not Path(p).is_file()]
    if missing or not images:
        return fail(f"image(s) not found: {', '.join(missing) or '(none given)'}")
    try:
        price = cost.from_args(args)
    except InfkitError as exc:
        return fail(str(exc))
    token = args.token
    if token is None:
        token = inference_token(args.key_file)
    model = url.path.rstrip("/").rsplit("/", 1)[-1] if "/predictions/" in url.path else None
    metrics_url = args.metrics_url or f"{url.scheme}://{url.hostname}:8082/metrics"
    if metrics_url == "none":
        metrics_url = None

    monitor = None
    if args.neuron_monitor:
        from infkit.monitor.stream import Stream

        try:
            monitor = Stream(args.neuron_monitor, skip_existing=True, option="--neuron-monitor").start()
        except InfkitError as exc:
            return fail(str(exc))

    target = loadgen.Target(args.url, [Path(p).read_bytes() for p in images], token, args.timeout)
    mode = "open" if args.rate else "closed"
    levels = args.sweep or [args.rate if args.rate else args.num_thread]
    is_sweep = args.sweep is not None
    specs = [
        LevelSpec(
            mode=mode,
            level=lv,
            warmup=args.warmup,
            max_duration=args.duration,
            interval=args.interval,
            window=args.window,
            stable_windows=args.stable_windows if is_sweep else 0,
            tolerance=args.tolerance,
            arrivals=args.arrivals,
            workers=args.workers,
            processes=args.processes,
            cpu_limit=args.client_cpu_limit,
            max_error_rate=args.max_error_rate,
        )
        for lv in levels
    ]
    out_dir = args.out / time.strftime("%Y-%m-%d_%H-%M-%S")
    print(f"{mode} loop against {args.url} with {len(images)} image(s); results -> {out_dir}")
    machine_before = busy.snapshot()
    try:
        results = sweep(target, specs, metrics_url, model)
    except InfkitError as exc:  # client processes that could not start
        return fail(str(exc))
    machine_after = busy.snapshot()
    if monitor:
        from infkit.monitor import summary as neuron_summary

        try:
            neuron_summary.attach(results, monitor)
        except KeyboardInterrupt:
            print("neuron-monitor: stopped waiting; levels get the reports read so far")
            neuron_summary.attach(results, monitor, wait=False)
        monitor.stop()
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "token"}
    config.update(images=[str(p) for p in images], mode=mode, metrics_url=metrics_url)
    for r in results:
        r["cost_per_million_usd"] = price.per_million(r["summary"]["throughput_rps"]) if price else None
    warnings = busy.warnings([machine_before] + [(r["machine_load"] or {}).get("before") for r in results])
    outcome = console.outcome(results)
    extra = {
        "pricing": price.as_dict() if price else None,
        "machine_load": busy.around(machine_before, machine_after),
        "warnings": warnings,
        "outcome": outcome,
    }
    paths = report.write_load(out_dir, config, machine_info(), results, extra)

    console.print_levels(results, mode, paths)
    print(f"machine before the run: {console.machine_line(machine_before)}")
    print(f"machine after the run:  {console.machine_line(machine_after)}")
    if price:
        print(f"price: {price.describe()}")
    for line in warnings:
        print(line)
    if any(r["interrupted"] for r in results):
        return 130
    if outcome:
        print(f"error: {outcome}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
