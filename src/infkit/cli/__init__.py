"""The `infkit` command: one sub-command per stage, each a `main(argv) -> exit status` in this package.

The original entry scripts (src/train.py, src/trace_inferentia.py, src/utils/benchmark.py, ...) are a few lines over
the same functions, so `python src/train.py ...` and `infkit train ...` are one command under two names."""

from __future__ import annotations

import importlib
import sys

#: sub-command -> (module under infkit.cli, one line for `infkit --help`, the original script it also runs as)
STAGES: dict[str, tuple[str, str, str]] = {
    "train": ("train", "train a timm classifier (Hydra overrides, e.g. experiment=digits_example)", "src/train.py"),
    "trace": (
        "trace",
        "compile a checkpoint: neuron, neuronx, torchscript, onnx, onnx_int8, export",
        "src/trace_inferentia.py",
    ),
    "package": ("package", "pack a compiled artifact into a TorchServe .mar", "src/package.py"),
    "serve": ("serve", "start | stop | status a TorchServe on loopback", "src/serve.py"),
    "explain": ("explain", "ask a running server for an attribution overlay PNG", "src/explain.py"),
    "bench": ("bench", "load-test a served model (closed/open loop, sweeps)", "src/utils/benchmark.py"),
    "bench-model": ("bench_model", "every backend in-process x batch sizes", "src/bench_model.py"),
    "tune": ("tune", "search serving configurations under a latency budget", "src/tune.py"),
    "soak": ("soak", "long open-loop load at a fraction of capacity", "src/soak.py"),
    "neuron-exporter": ("neuron_exporter", "neuron-monitor's reports as Prometheus metrics", "src/neuron_exporter.py"),
    "demo": ("demo", "the main job end to end on the embedded digits data", "src/demo.py"),
}


def usage() -> str:
    width = max(map(len, STAGES))
    lines = ["usage: infkit <stage> [arguments]   (infkit <stage> --help for a stage's own options)", "", "stages:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary, _) in STAGES.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"error: unknown stage {stage!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"infkit.cli.{STAGES[stage][0]}")
    return int(module.main(rest) or 0)
