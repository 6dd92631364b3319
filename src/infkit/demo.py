"""`make demo`: the pipeline end to end on the embedded digits data.

train -> compile (torchscript, onnx) -> package (.mar) -> TorchServe on loopback -> live tests -> stop.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from infkit.compile import run as compile_stage
from infkit.compile.registry import get_backend
from infkit.package import run as package_stage
from infkit.serve import server
from infkit.serve.config import ServerConfig
from infkit.train import run as train_stage
from infkit.utils.compose import compose_config
from infkit.utils.timing import latencies

BACKENDS = ("torchscript", "onnx")
REPO = Path(__file__).resolve().parents[2]


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def single_image_latency_ms(backend_name: str, artifact: Path, example: torch.Tensor) -> tuple[float, float]:
    fn = get_backend(backend_name).load(artifact)
    t = latencies(lambda: fn(example), warmup=5, repeats=50)
    return float(np.percentile(t, 50) * 1e3), float(np.percentile(t, 90) * 1e3)


def _ports(srv: ServerConfig) -> ServerConfig:
    """The configured ports where all are free; else free ones picked by the OS (said aloud)."""
    if not srv.busy_ports():
        return srv
    srv = srv.with_free_ports()
    print(f"      configured ports are busy; using {srv.ports()}")
    return srv


def live_tests_command(srv: ServerConfig, model: str, key_file: str | Path, dataset: str = "digits",
                       tests_dir: str | Path = "tests/test_serve") -> list[str]:
    """`pytest --public_ip ... tests/test_serve` against this server, as a user would run it."""
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests_dir),
            "--public_ip", srv.address, "--model", model, "--dataset", dataset,
            "--http-port", str(srv.inference_port), "--grpc-port", str(srv.grpc_inference_port),
            "--metrics-port", str(srv.metrics_port), "--key-file", str(key_file)]


def run(root: Path = Path("logs/demo")) -> dict:
    out = root / time.strftime("%Y-%m-%d_%H-%M-%S")
    experiment = "experiment=digits_example"
    steps = 5
    print(f"[1/{steps}] training resnet18 on digits: python src/train.py {experiment}", flush=True)
    trained = train_stage.run(compose_config("train", [experiment], out / "train"))
    print(f"      test/acc {trained.metrics.get('test/acc', float('nan')):.4f}; best checkpoint {trained.best_ckpt}")

    rows, compiled, packaged = [], {}, {}
    store = out / "model_store"
    for backend in BACKENDS:
        print(f"[2/{steps}] compiling with {backend}: python src/trace_inferentia.py {experiment} "
              f"ckpt_path={trained.best_ckpt} compile={backend}", flush=True)
        cdir = out / f"compile-{backend}"
        result = compile_stage.run(compose_config(
            "trace", [experiment, f"ckpt_path={trained.best_ckpt}", f"compile={backend}"], cdir))
        compiled[backend] = result
        c, h, w = result.manifest["input_size"]
        p50, p90 = single_image_latency_ms(backend, result.artifacts[0], torch.randn(1, c, h, w))
        par = result.manifest["parity"]
        rows.append([backend, str(result.artifacts[0]), f"{result.artifacts[0].stat().st_size / 1e6:.1f} MB",
                     f"{100 * par['top1_agreement']:.1f} % top-1, max|Δ| {par['max_abs_logit_diff']:.1e}",
                     f"{p50:.2f} / {p90:.2f}"])
    for backend, result in compiled.items():
        cdir = result.manifest_path.parent
        print(f"[3/{steps}] packaging: python src/package.py artifact_dir={cdir} model_store={store}", flush=True)
        packaged[backend] = package_stage.run(compose_config(
            "package", [f"artifact_dir={cdir}", f"model_store={store}"], out / "package"))

    cfg = compose_config("serve", [f"model_store={store}", f"state_dir={out / 'serve'}"], out)
    srv = _ports(ServerConfig.from_mapping(OmegaConf.to_container(cfg.serve.server, resolve=True)))
    print(f"[4/{steps}] serving: python src/serve.py start model_store={store} state_dir={out / 'serve'}", flush=True)
    state = server.start(srv, store, out / "serve", strict=True)
    live_results = {}
    try:
        for pkg in packaged.values():
            print(f"[5/{steps}] live tests: pytest --public_ip 127.0.0.1 --model {pkg.model_name} tests/test_serve",
                  flush=True)
            proc = subprocess.run(live_tests_command(srv, pkg.model_name, state["key_file"]), cwd=REPO,
                                  capture_output=True, text=True)
            summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
            live_results[pkg.model_name] = (proc.returncode, summary)
            print(f"      {summary}")
            if proc.returncode != 0:
                print(proc.stdout[-4000:])
    finally:
        server.stop(out / "serve")
        print("      TorchServe stopped")

    print()
    print(_table(rows, ["backend", "artifact", "size", "parity vs eager", "1-image latency p50/p90 ms"]))
    print()
    print(_table([[pkg.model_name, str(pkg.mar), "passed" if live_results[pkg.model_name][0] == 0 else "FAILED",
                   live_results[pkg.model_name][1]] for pkg in packaged.values()],
                 ["model", "archive", "live tests", "pytest summary"]))
    print(f"\ntest metrics:  {trained.metrics_path}")
    for backend, result in compiled.items():
        print(f"{backend + ' manifest:':<25}{result.manifest_path}")
    print(f"server state and logs:   {out / 'serve'}")
    failed = [n for n, (code, _) in live_results.items() if code != 0]
    return {"train": trained, "compile": compiled, "package": packaged, "out": out, "failed": failed}
