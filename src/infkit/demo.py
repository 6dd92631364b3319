"""`make demo`: the pipeline end to end on the embedded digits data.

train -> compile with every CPU backend (torchscript, onnx, onnx_int8, export) -> measure each -> package the
fastest one that passes its accuracy guard (.mar) -> TorchServe on loopback -> live tests -> stop.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from infkit.compile import parity
from infkit.compile import run as compile_stage
from infkit.compile.registry import CPU_BACKENDS, get_backend
from infkit.errors import InfkitError
from infkit.package import run as package_stage
from infkit.resources import source_checkout
from infkit.serve.core.config import ServerConfig
from infkit.serve.core.runtime import ServedModel
from infkit.serve.engine import get_engine
from infkit.train import run as train_stage
from infkit.utils.compose import compose_config
from infkit.utils.cpu import usable_cores
from infkit.utils.timing import latencies

BACKENDS = CPU_BACKENDS


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def guard_cells(manifest: dict) -> list[str]:
    """The table's test top-1, agreement and parity cells; "not checked" where a check was turned off."""
    par, acc = manifest["parity"], manifest["accuracy"]
    top1 = (
        "not checked"
        if parity.status(acc) == parity.NOT_CHECKED
        else f"{100 * acc['compiled_top1']:.2f} % (eager {100 * acc['eager_top1']:.2f} %)"
    )
    if parity.status(par) == parity.NOT_CHECKED:
        return [top1, "not checked", "not checked"]
    return [top1, f"{100 * par['top1_agreement']:.1f} %", f"max|Δ| {par['max_abs_logit_diff']:.1e}"]


def speed(compile_dir: Path, batch_size: int) -> dict:
    """The compiled model as a worker with all cores to itself runs it: p50/p90 ms for one image, img/s at
    `batch_size` (the batch TorchServe forms under load)."""
    cores = usable_cores()
    model = ServedModel.load(compile_dir, threads=cores, shared_cores=False)
    c, h, w = model.manifest["input_size"]
    one, batch = torch.randn(1, c, h, w), torch.randn(batch_size, c, h, w)
    t1 = latencies(lambda: model.logits(one), warmup=5, repeats=50)
    tb = latencies(lambda: model.logits(batch), warmup=3, repeats=20)
    return {
        "p50_ms": float(np.percentile(t1, 50) * 1e3),
        "p90_ms": float(np.percentile(t1, 90) * 1e3),
        "batch_ips": float(batch_size / np.median(tb)),
    }


def _ports(srv: ServerConfig) -> ServerConfig:
    """The configured ports where all are free; else free ones picked by the OS (said aloud)."""
    if not srv.busy_ports():
        return srv
    srv = srv.with_free_ports()
    print(f"      configured ports are busy; using {srv.ports()}")
    return srv


def live_tests_command(
    srv: ServerConfig, model: str, key_file: str | Path, dataset: str = "digits", tests_dir: str | Path | None = None
) -> list[str]:
    """`pytest --public_ip ... tests/test_serve` against this server, as a user would run it."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(tests_dir or source_checkout() / "tests" / "test_serve"),
        "--public_ip",
        srv.address,
        "--model",
        model,
        "--dataset",
        dataset,
        "--http-port",
        str(srv.inference_port),
        "--grpc-port",
        str(srv.grpc_inference_port),
        "--metrics-port",
        str(srv.metrics_port),
        "--key-file",
        str(key_file),
    ]


def compile_and_measure(experiment: str, ckpt: Path, out: Path, batch_size: int, steps: int) -> tuple[dict, list]:
    """{backend: (CompileResult, speed)} for those that compile and pass their guards; the summary rows of all."""
    built, rows = {}, []
    for backend in BACKENDS:
        reason = get_backend(backend).unavailable_reason()
        if reason:
            print(f"      {backend}: skipped: {reason}")
            rows.append([backend, "skipped (not available here)", "", "", "", "", ""])
            continue
        print(
            f"[2/{steps}] compiling with {backend}: python src/trace_inferentia.py {experiment} "
            f"ckpt_path={ckpt} compile={backend}",
            flush=True,
        )
        try:
            result = compile_stage.run(
                compose_config(
                    "trace", [experiment, f"ckpt_path={ckpt}", f"compile={backend}"], out / f"compile-{backend}"
                )
            )
        except InfkitError as exc:  # a failed accuracy guard: reported, never packaged
            print(f"      {backend}: not packaged: {exc}")
            rows.append([backend, "FAILED its guard", "", "", "", "", str(exc)[:60]])
            continue
        s = speed(result.manifest_path.parent, batch_size)
        built[backend] = (result, s)
        rows.append(
            [
                backend,
                f"{result.artifacts[0].stat().st_size / 1e6:.1f} MB",
                f"{s['p50_ms']:.2f} / {s['p90_ms']:.2f}",
                f"{s['batch_ips']:.0f}",
                *guard_cells(result.manifest),
            ]
        )
    return built, rows


def run(root: Path = Path("logs/demo"), engine: str = "torchserve") -> dict:
    """The whole job; `engine`: the serving engine of steps 4-5 (serve.engine: torchserve or ray)."""
    out = root / time.strftime("%Y-%m-%d_%H-%M-%S")
    experiment = "experiment=digits_example"
    steps = 5
    print(f"[1/{steps}] training resnet18 on digits: python src/train.py {experiment}", flush=True)
    trained = train_stage.run(compose_config("train", [experiment], out / "train"))
    print(f"      test/acc {trained.metrics.get('test/acc', float('nan')):.4f}; best checkpoint {trained.best_ckpt}")

    store = out / "model_store"
    cfg = compose_config("serve", [f"model_store={store}", f"state_dir={out / 'serve'}"], out)
    batch_size = int(cfg.serve.model.batchSize)
    built, rows = compile_and_measure(experiment, trained.best_ckpt, out, batch_size, steps)
    if not built:
        raise InfkitError("no backend compiled and passed its accuracy guard; see the messages above")
    best = max(built, key=lambda b: built[b][1]["batch_ips"])
    cdir = built[best][0].manifest_path.parent
    print(
        f"[3/{steps}] packaging the fastest that passed its guards ({best}, {built[best][1]['batch_ips']:.0f} img/s "
        f"at batch {batch_size}): python src/package.py artifact_dir={cdir} model_store={store}",
        flush=True,
    )
    pkg = package_stage.run(
        compose_config("package", [f"artifact_dir={cdir}", f"model_store={store}"], out / "package")
    )

    srv = _ports(ServerConfig.from_mapping(OmegaConf.to_container(cfg.serve.server, resolve=True)))
    serving = get_engine(engine, OmegaConf.to_container(cfg.serve, resolve=True))
    # Ray's Unix sockets live under its state folder: a short one on the Ray engine
    state_dir = out / "serve" if engine == "torchserve" else Path(tempfile.mkdtemp(prefix="infkit-demo-")) / "serve"
    switch = "" if engine == "torchserve" else f" serve.engine={engine}"
    print(
        f"[4/{steps}] serving: python src/serve.py start model_store={store} state_dir={state_dir}{switch}",
        flush=True,
    )
    state = serving.start(srv, store, state_dir, strict=True)
    try:
        print(
            f"[5/{steps}] live tests: pytest --public_ip 127.0.0.1 --model {pkg.model_name} tests/test_serve",
            flush=True,
        )
        proc = subprocess.run(
            live_tests_command(srv, pkg.model_name, state["key_file"]),
            cwd=source_checkout(),
            capture_output=True,
            text=True,
            check=False,
        )
        summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        print(f"      {summary}")
        if proc.returncode != 0:
            print(proc.stdout[-4000:])
    finally:
        serving.stop(state_dir)
        print(f"      {serving.label} stopped")

    print()
    for row in rows:
        row[0] += "  <- packaged" if row[0] == best else ""
    print(
        _table(
            rows,
            [
                "backend",
                "artifact",
                "1 image p50/p90 ms",
                f"img/s at batch {batch_size}",
                "test top-1 (compiled vs eager)",
                "top-1 agreement",
                "parity",
            ],
        )
    )
    print()
    print(
        _table(
            [[pkg.model_name, str(pkg.mar), "passed" if proc.returncode == 0 else "FAILED", summary]],
            ["model", "archive", "live tests", "pytest summary"],
        )
    )
    print(f"\ntest metrics:  {trained.metrics_path}")
    for backend, (result, _) in built.items():
        print(f"{backend + ' manifest:':<25}{result.manifest_path}")
    print(f"server state and logs:   {out / 'serve'}")
    failed = [pkg.model_name] if proc.returncode != 0 else []
    return {
        "train": trained,
        "compile": {b: r for b, (r, _) in built.items()},
        "best": best,
        "package": {best: pkg},
        "out": out,
        "failed": failed,
    }
