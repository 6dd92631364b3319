"""Find the serving configuration that best meets an objective: package, serve and measure each candidate.

exhaustive:  infkit tune <compile run folder> --p99-ms 50 --concurrency 32 --workers 1,2 --batch-size 1,4,8
quick:       infkit tune <folder> [<folder> ...] --p99-ms 50 --concurrency 8,32 --workers 1,2 --threads 1,2 \\
                 --batch-size 1,4,8,16 --max-batch-delay 0,2,5,20 --mode quick
open loop:   infkit tune <folder> --p90-ms 30 --rate 200,400 ...
latency:     infkit tune <folder> --objective latency --concurrency 1 --workers 1,2 --threads 1,2 \\
                 --batch-size 1 --max-batch-delay 0        (lowest p50 with one client)
cost:        infkit tune <folder> --objective cost --p99-ms 50 --instance c7i.xlarge --concurrency 16,32

Objectives (--objective): throughput (default) - the most successful req/s within the latency budget
(--p50-ms/--p90-ms/--p99-ms); latency - the lowest p50 at the one load level given (default 1 client; a budget
is optional); cost - the lowest USD per million inferences within the budget, at --instance's price (or
--price-per-hour). Errors are never throughput: a level whose error rate is above --max-error-rate (default 1 %)
never qualifies. --threads sets each worker's intra-op threads: for ONNX Runtime artifacts, its session's threads.

Each candidate gets its own TorchServe on free loopback ports. Results land in logs/tune/<time>/: ranking.md,
ranking.csv, results.json (with the machine's load before and after each level), pareto.png, and winner/
(model-config.yaml + .mar). Ctrl-C stops the running server and still writes what was measured.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infkit.bench import cost
from infkit.bench.stats import MAX_ERROR_RATE
from infkit.cli._common import guarded
from infkit.utils.argtypes import positive, share

#: the space's batching defaults per objective: throughput batches, a latency objective answers each request alone
BATCHING = {"throughput": ((8,), (20,)), "cost": ((8,), (20,)), "latency": ((1,), (0,))}


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
    p.add_argument(
        "--objective",
        choices=("throughput", "latency", "cost"),
        default="throughput",
        help="what to optimise (default throughput; see above)",
    )
    budget = p.add_mutually_exclusive_group()
    for q in ("p50", "p90", "p99"):
        budget.add_argument(f"--{q}-ms", type=positive(float), help=f"latency budget: {q} at most this many ms")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument(
        "--concurrency", type=int_list(), help="closed loop: concurrent clients (default 16; --objective latency: 1)"
    )
    shape.add_argument("--rate", type=int_list(), help="open loop: requests per second, e.g. 100,200")
    p.add_argument("--workers", type=int_list(), default=(1,), help="TorchServe workers (default 1)")
    p.add_argument(
        "--threads",
        type=int_list(auto=True),
        default=(0,),
        help="intra-op threads per worker (ONNX Runtime: its session's threads), e.g. 1,2 (default auto)",
    )
    p.add_argument(
        "--batch-size", type=int_list(), default=None, help="TorchServe batchSize (default 8; --objective latency: 1)"
    )
    p.add_argument(
        "--max-batch-delay",
        type=int_list(0),
        default=None,
        help="maxBatchDelay ms (default 20; --objective latency: 0)",
    )
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
        "--max-error-rate",
        type=share,
        default=MAX_ERROR_RATE,
        metavar="F",
        help=f"a level with a larger share of failed requests never qualifies (default {MAX_ERROR_RATE})",
    )
    cost.add_arguments(p)
    p.add_argument(
        "--server", action="append", default=[], metavar="KEY=VALUE", help="serve.server setting, repeatable"
    )
    p.add_argument(
        "--engine",
        choices=("torchserve", "ray"),
        default=None,
        help="the serving engine each candidate runs on (serve.engine; default: the serve config's, torchserve)",
    )
    p.add_argument("--out", type=Path, default=Path("logs/tune"), help="results go to <out>/<time>/")
    return p


@guarded
def main(argv: list[str] | None = None) -> int:
    from infkit.errors import InfkitError
    from infkit.resources import sample_images
    from infkit.tune.measure import Load
    from infkit.tune.objective import Budget, Objective
    from infkit.tune.run import TuneConfig, run

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
    percentile = next((q for q in ("p50", "p90", "p99") if getattr(args, f"{q}_ms") is not None), None)
    budget = Budget(percentile, getattr(args, f"{percentile}_ms")) if percentile else None
    price = cost.from_args(args)
    if budget is None and args.objective != "latency":
        raise InfkitError(
            f"--objective {args.objective} needs a latency budget: pass one of --p50-ms --p90-ms --p99-ms, e.g. "
            "--p99-ms 50 (or use --objective latency)"
        )
    if args.objective == "cost" and price is None:
        raise InfkitError(
            "--objective cost needs a price: pass --instance NAME (e.g. c7i.xlarge) or --price-per-hour X"
        )
    default_level = (1,) if args.objective == "latency" else (16,)
    mode, levels = ("open", args.rate) if args.rate else ("closed", args.concurrency or default_level)
    if args.objective == "latency" and len(levels) != 1:
        raise InfkitError(
            f"--objective latency ranks the p50 at one load level; {','.join(map(str, levels))} gives "
            f"{len(levels)}: give one, e.g. --concurrency 1"
        )
    batch_size, delay = BATCHING[args.objective]
    load = Load(
        mode=mode,
        levels=[float(v) for v in levels],
        bodies=[Path(p).read_bytes() for p in images],
        warmup=args.warmup,
        max_duration=args.duration,
        window=args.window,
        stable_windows=args.stable_windows,
        tolerance=args.tolerance,
        max_error_rate=args.max_error_rate,
    )
    objective = Objective(args.objective, budget, float(levels[0]), price, args.max_error_rate)
    cfg = TuneConfig(
        artifact_dirs=list(args.artifact_dirs),
        budget=budget,
        load=load,
        workers=args.workers,
        threads=args.threads,
        batch_size=args.batch_size or batch_size,
        max_batch_delay=args.max_batch_delay or delay,
        spinning=args.spinning,
        mode=args.mode,
        max_candidates=args.max_candidates,
        allow_oversubscribe=args.allow_oversubscribe,
        neuron_cores=args.neuron_cores,
        out=args.out,
        server_overrides=[f"serve.server.{s}" for s in args.server]
        + ([f"serve.engine={args.engine}"] if args.engine else []),
        objective=objective,
    )
    result = run(cfg, echo=lambda line: print(line, flush=True))  # progress shows as it happens, also in a pipe
    print(f"\n{result.paths['markdown'].read_text()}")
    for key in ("markdown", "csv", "json", "png", "winner_config", "winner_mar"):
        if key in result.paths:
            print(f"{key:>14}: {result.paths[key]}")
    if result.interrupted:
        return 130
    if result.winner is None:
        print(
            f"no candidate qualified for {objective.describe()}: raise the budget, lower the load, or see the errors "
            "in the table",
            file=sys.stderr,
        )
        return 1
    print(f"winner: {result.winner['candidate'].label()}")
    return 0
