"""Benchmark a model in-process on every backend available here (eager, torchscript, onnx; neuron where present).

    python src/bench_model.py --ckpt <trained .ckpt>                       # the trained model at its input size
    python src/bench_model.py --model resnet18 --input-size 3 224 224      # random weights: speed does not depend on them
    python src/bench_model.py --ckpt <ckpt> --backends neuronx --data-parallel   # Inf2: also DataParallel, all cores

Writes model_bench.{md,json,png} under logs/bench/<time>/ and prints the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from infkit.errors import InfkitError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", type=Path, help="checkpoint written by src/train.py")
    src.add_argument("--model", help="timm model name (random weights)")
    p.add_argument("--num-classes", type=int, default=10, help="with --model (default 10)")
    p.add_argument("--input-size", type=int, nargs=3, default=None, metavar=("C", "H", "W"),
                   help="with --model (default 3 224 224); with --ckpt it comes from the checkpoint")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--backends", nargs="+", default=None, help="default: every registered backend (eager always)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all usable cores)")
    p.add_argument("--iterations", type=int, default=200, help="timed calls per batch size, at most")
    p.add_argument("--max-seconds", type=float, default=10.0, help="time cap per batch size")
    p.add_argument("--out", type=Path, default=Path("logs/bench"))
    p.add_argument("--data-parallel", action="store_true",
                   help="Neuron backends also measured in DataParallel over all NeuronCores (rows <backend>+dp; "
                        "needs torch-neuron or torch-neuronx; neuron is then compiled without pipelining)")
    args = p.parse_args(argv)
    if min(args.batch_sizes) < 1:
        p.error(f"--batch-sizes {args.batch_sizes}: give whole numbers >= 1")

    from infkit.bench import model_bench
    from infkit.train import checkpoint
    from infkit.model import create_network

    if args.ckpt:
        loaded = checkpoint.load(args.ckpt)
        net, hp = loaded.net, loaded.hparams
        name, classes, size = hp["model_name"], int(hp["num_classes"]), list(args.input_size or hp["input_size"])
    else:
        size = list(args.input_size or [3, 224, 224])
        name, classes = args.model, args.num_classes
        net = create_network(name, classes, size[0], exportable=True).eval()
    threads = args.threads or len(os.sched_getaffinity(0))
    out = args.out / time.strftime("%Y-%m-%d_%H-%M-%S")
    result = model_bench.run(net, name, classes, size, sorted(set(args.batch_sizes)), out, threads,
                             backends=args.backends, iterations=args.iterations, max_seconds=args.max_seconds,
                             data_parallel=args.data_parallel)
    paths = model_bench.write(result, out)
    print()
    print(paths["md"].read_text())
    print(f"results: {paths['md']}\n         {paths['json']}\n         {paths['png']}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except InfkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
