"""Find the serving configuration that meets a latency budget: package, serve and measure each candidate.

exhaustive:  infkit tune <compile run folder> --p99-ms 50 --concurrency 32 --workers 1,2 --batch-size 1,4,8
quick:       infkit tune <folder> [<folder> ...] --p99-ms 50 --concurrency 8,32 --workers 1,2 --threads 1,2 \\
                 --batch-size 1,4,8,16 --max-batch-delay 0,2,5,20 --mode quick
open loop:   infkit tune <folder> --p90-ms 30 --rate 200,400 ...

Each candidate gets its own TorchServe on free loopback ports. Results land in logs/tune/<time>/: ranking.md,
ranking.csv, results.json, pareto.png, and winner/ (model-config.yaml + .mar). Ctrl-C stops the running server
and still writes what was measured.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infkit.cli._common import guarded
from infkit.utils.argtypes import positive


def int_list(minimum: int = 1, auto: bool = False):
    """A comma-separated list of integers >= minimum (and 'auto' where allowed, as 0)."""

    def conv(text: str) -> tuple[int, ...]:
        values = []
        for part in (p.strip() for p in text.split(",")):
            if auto and part == "auto":
                values.append(0)
                continue
            try:
                value = int(part)
            except ValueError:
                value = minimum - 1
            if value < minimum:
                hint = f"integers >= {minimum}" + (" or auto" if auto else "")
                raise argparse.ArgumentTypeError(f"{text!r}: give a comma-separated list of {hint}, e.g. 1,2,4")
            values.append(value)
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"{text!r} repeats a value; list each once")
        return tuple(values)

    return conv


def spin_list(text: str) -> tuple[bool | None, ...]:
    choices = {"auto": None, "on": True, "off": False}
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(p not in choices for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: give a comma-separated list of on, off, auto")
    return tuple(dict.fromkeys(choices[p] for p in parts))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="infkit tune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("artifact_dirs", nargs="+", type=Path, help="compile run folder(s) (each holds manifest.json)")
    budget = p.add_mutually_exclusive_group(required=True)
    for q in ("p50", "p90", "p99"):
        budget.add_argument(f"--{q}-ms", type=positive(float), help=f"latency budget: {q} at most this many ms")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--concurrency", type=int_list(), help="closed loop: concurrent clients (default 16)")
    shape.add_argument("--rate", type=int_list(), help="open loop: requests per second, e.g. 100,200")
    p.add_argument("--workers", type=int_list(), default=(1,), help="TorchServe workers (default 1)")
    p.add_argument("--threads", type=int_list(auto=True), default=(0,), help="threads per worker (default auto)")
    p.add_argument("--batch-size", type=int_list(), default=(8,), help="TorchServe batchSize (default 8)")
    p.add_argument("--max-batch-delay", type=int_list(0), default=(20,), help="maxBatchDelay ms (default 20)")
    p.add_argument("--spinning", type=spin_list, default=(None,), help="ONNX Runtime spinning: on,off,auto")
    p.add_argument("--mode", choices=("exhaustive", "quick"), default="exhaustive", help="search (default exhaustive)")
    p.add_argument("--max-candidates", type=positive(int), default=None, help="quick: measure at most this many")
    p.add_argument("--allow-oversubscribe", action="store_true", help="measure workers x threads > usable cores")
    p.add_argument("--neuron-cores", type=positive(int), default=None, help="NeuronCores (default serve.neuron.cores)")
    p.add_argument("--images", nargs="+", type=Path, default=None, help="images to send (default: the samples)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per level (default 3)")
    p.add_argument("--duration", type=positive(float), default=20.0, help="measured seconds per level, at most")
    p.add_argument("--window", type=positive(float), default=2.0, help="stability window in seconds (default 2)")
    p.add_argument("--stable-windows", type=positive(int), default=3, help="windows that must agree (default 3)")
    p.add_argument("--tolerance", type=positive(float), default=0.1, help="relative agreement (default 0.1)")
    p.add_argument(
        "--server", action="append", default=[], metavar="KEY=VALUE", help="serve.server setting, repeatable"
    )
    p.add_argument("--out", type=Path, default=Path("logs/tune"), help="results go to <out>/<time>/")
    return p


@guarded
def main(argv: list[str] | None = None) -> int:
    from infkit.errors import InfkitError
    from infkit.resources import sample_images
    from infkit.tune.measure import Load
    from infkit.tune.run import TuneConfig, run
    from infkit.tune.search import Budget

    args = build_parser().parse_args(argv)
    if args.warmup < 0:
        raise InfkitError(f"--warmup {args.warmup:g} is negative; give 0 or more seconds")
    images = args.images or sample_images()
    missing = [str(p) for p in images if not Path(p).is_file()]
    if missing or not images:
        raise InfkitError(f"image(s) not found: {', '.join(missing) or '(none given)'}; pass --images FILE ...")
    bad = [s for s in args.server if "=" not in s]
    if bad:
        raise InfkitError(f"--server {bad[0]!r} is not KEY=VALUE; e.g. --server number_of_netty_threads=4")
    percentile = next(q for q in ("p50", "p90", "p99") if getattr(args, f"{q}_ms") is not None)
    mode, levels = ("open", args.rate) if args.rate else ("closed", args.concurrency or (16,))
    load = Load(
        mode=mode,
        levels=[float(v) for v in levels],
        bodies=[Path(p).read_bytes() for p in images],
        warmup=args.warmup,
        max_duration=args.duration,
        window=args.window,
        stable_windows=args.stable_windows,
        tolerance=args.tolerance,
    )
    cfg = TuneConfig(
        artifact_dirs=list(args.artifact_dirs),
        budget=Budget(percentile, getattr(args, f"{percentile}_ms")),
        load=load,
        workers=args.workers,
        threads=args.threads,
        batch_size=args.batch_size,
        max_batch_delay=args.max_batch_delay,
        spinning=args.spinning,
        mode=args.mode,
        max_candidates=args.max_candidates,
        allow_oversubscribe=args.allow_oversubscribe,
        neuron_cores=args.neuron_cores,
        out=args.out,
        server_overrides=[f"serve.server.{s}" for s in args.server],
    )
    result = run(cfg, echo=lambda line: print(line, flush=True))  # progress shows as it happens, also in a pipe
    print(f"\n{result.paths['markdown'].read_text()}")
    for key in ("markdown", "csv", "json", "png", "winner_config", "winner_mar"):
        if key in result.paths:
            print(f"{key:>14}: {result.paths[key]}")
    if result.interrupted:
        return 130
    if result.winner is None:
        print(f"no candidate met {cfg.budget.describe()}: raise the budget or lower the load", file=sys.stderr)
        return 1
    print(f"winner: {result.winner['candidate'].label()}")
    return 0
