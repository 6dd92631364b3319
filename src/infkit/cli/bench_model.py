"""infkit bench-model / python src/bench_model.py: benchmark a model in-process: eager and every backend available
here (torchscript, onnx, onnx_int8, export; neuron/neuronx where their SDK imports) x batch sizes, with speed-up vs
eager and, for a checkpoint, test accuracy.

    python src/bench_model.py --ckpt <trained .ckpt>                       # the trained model at its input size
    python src/bench_model.py --model resnet18 --input-size 3 224 224      # random weights: speed is the same
    python src/bench_model.py --ckpt <ckpt> --backends neuronx --data-parallel   # Inf2: also DataParallel, all cores

    python src/bench_model.py --ckpt <ckpt> --instance c7i.xlarge           # + USD per million inferences

onnx_int8 is calibrated on real training images of the data config (--data; default: the embedded digits, resized
to the input size). Every backend is first checked to compute the eager model's function on real images, within a
documented bound (infkit.bench.same_function: fp32 backends' logits close; int8 top-1 agreement and a bounded
logit error); one that fails is reported failed, never measured, and the command exits 1. Random weights (--model)
are seeded (--seed). Writes model_bench.{md,json,png} under logs/bench/<time>/, with the machine's load before and
after the run and each backend, and prints the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from infkit.bench import cost
from infkit.cli._common import guarded


@guarded
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", type=Path, help="checkpoint written by src/train.py")
    src.add_argument("--model", help="timm model name (random weights)")
    p.add_argument("--num-classes", type=int, default=10, help="with --model (default 10)")
    p.add_argument("--seed", type=int, default=0, help="with --model: the random weights' seed (default 0)")
    p.add_argument(
        "--input-size",
        type=int,
        nargs=3,
        default=None,
        metavar=("C", "H", "W"),
        help="with --model (default 3 224 224); with --ckpt it comes from the checkpoint",
    )
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--backends", nargs="+", default=None, help="default: every registered backend (eager always)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all usable cores)")
    p.add_argument("--iterations", type=int, default=200, help="timed calls per batch size, at most")
    p.add_argument("--max-seconds", type=float, default=10.0, help="time cap per batch size")
    p.add_argument("--calibration-images", default=256, help="onnx_int8: training images to calibrate on")
    p.add_argument("--calibration-method", default="minmax", help="onnx_int8: minmax, entropy or percentile")
    p.add_argument(
        "--int8",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="other onnx_int8 options, e.g. activation_type=int8 weight_type=int8 reduce_range=true",
    )
    p.add_argument(
        "--data",
        nargs="+",
        default=[],
        metavar="OVERRIDE",
        help="Hydra overrides choosing the data, e.g. experiment=cifar10_example data.root=DIR",
    )
    p.add_argument("--accuracy-images", type=int, default=2000, help="with --ckpt: test-split images (at most)")
    p.add_argument("--out", type=Path, default=Path("logs/bench"))
    p.add_argument(
        "--data-parallel",
        action="store_true",
        help="Neuron backends also measured in DataParallel over all NeuronCores (rows <backend>+dp; "
        "needs torch-neuron or torch-neuronx; neuron is then compiled without pipelining)",
    )
    cost.add_arguments(p)
    args = p.parse_args(argv)
    if min(args.batch_sizes) < 1:
        p.error(f"--batch-sizes {args.batch_sizes}: give whole numbers >= 1")
    price = cost.from_args(args)

    from infkit.bench import busy, model_bench, model_data, model_report
    from infkit.compile.registry import get_backend
    from infkit.model import create_network
    from infkit.train import checkpoint
    from infkit.utils.cpu import usable_cores

    int8_options = {
        "calibration_images": args.calibration_images,
        "calibration_method": args.calibration_method,
        **model_data.int8_flags(args.int8),
    }
    backends = args.backends or model_bench.DEFAULT_BACKENDS
    for b in backends:
        if b != "eager":
            get_backend(b)  # an unknown name stops here, in one line
    calibrate = any(getattr(get_backend(b), "needs_calibration", False) for b in backends if b != "eager")
    if args.ckpt:
        loaded = checkpoint.load(args.ckpt)
        net, hp = loaded.net, loaded.hparams
        name, classes, size = hp["model_name"], int(hp["num_classes"]), list(args.input_size or hp["input_size"])
        mean, std = hp["mean"], hp["std"]
    else:
        import timm.data
        import torch

        torch.manual_seed(args.seed)  # the same random weights run after run
        size = list(args.input_size or [3, 224, 224])
        name, classes = args.model, args.num_classes
        net = create_network(name, classes, size[0], exportable=True).eval()
        cfg = timm.data.resolve_model_data_config(net)
        mean, std = cfg["mean"], cfg["std"]
    threads = args.threads or usable_cores()
    out = args.out / time.strftime("%Y-%m-%d_%H-%M-%S")
    data = model_data.load_data(
        args.data, size, mean, std, classes, int8_options, calibrate, args.accuracy_images if args.ckpt else None, out
    )
    result = model_bench.run(
        net,
        name,
        classes,
        size,
        sorted(set(args.batch_sizes)),
        out,
        threads,
        backends=backends,
        iterations=args.iterations,
        max_seconds=args.max_seconds,
        data=data,
        data_parallel=args.data_parallel,
    )
    result["pricing"] = price.as_dict() if price else None
    for row in result["rows"]:
        row["cost_per_million_usd"] = price.per_million(row["throughput_ips"]) if price else None
    loads = result["machine_load"]
    befores = [loads["run"]["before"]] + [m["before"] for m in loads["by_backend"].values()]
    result["warnings"] = busy.warnings(befores, what="the benchmark")
    paths = model_report.write(result, out)
    print()
    print(paths["md"].read_text())
    print(f"results: {paths['md']}\n         {paths['json']}\n         {paths['png']}")
    if result["failed"]:
        said = "; ".join(f"{b}: {c['reason']}" for b, c in result["failed"].items())
        print(f"error: not the eager model's function, not measured: {said}", file=sys.stderr)
        return 1
    return 0
