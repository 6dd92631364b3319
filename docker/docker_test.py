"""`make docker-test`: build the CPU image (TorchServe) and the slim torch-free image (infkit:ray-onnx: the Ray
engine and ONNX Runtime, docker/Dockerfile.ray-onnx), serve a packaged digits ONNX model from each on loopback ports,
run tests/test_serve against each container, then stop and remove it; then the CPU image as the pod of
k8s/deployment-cpu.yaml behind its auth proxy (docker/pod_check.py). The slim image must hold no torch and be at most
a quarter of the CPU image's size.

    python docker/docker_test.py                        # trains, compiles (ONNX) and packages a digits model first
    python docker/docker_test.py --model-store DIR --model digits_resnet18_onnx     # serve .mar files you have
    python docker/docker_test.py --slim-only          # only infkit:ray-onnx (--no-slim: only infkit:cpu)
    BASE_IMAGE=python:3.11-slim-bookworm python docker/docker_test.py              # base image to build on

Without BASE_IMAGE it uses python:3.11-slim-bookworm when the engine has it or can pull it, else a Debian 12
base made here with debootstrap (docs/deployment.md, "Building without a registry"). The machine's CA bundle
goes to the build as a BuildKit secret. Prints the image size and the test result; exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from image_build import build, check_engine, check_image, fail, sh  # beside this script, as base_image and pod_check

ROOT = Path(__file__).resolve().parents[1]


def package_digits(work: Path) -> tuple[Path, str]:
    """train digits_example -> compile=onnx -> package, into `work` (kept: later runs reuse the .mar, or the compiled
    model when the .mar holds another handler than this checkout's, which the image runs with)."""
    from infkit.package import run as package_stage
    from infkit.utils.compose import compose_config

    store = work / "model_store"
    reusable = current_archive(store)
    if reusable:
        print(f"reusing the digits model packaged by an earlier run: {reusable} (delete {work} to retrain)", flush=True)
        return store, reusable.stem
    if not (work / "compile" / "manifest.json").is_file():
        train_and_compile(work)
    packaged = package_stage.run(
        compose_config("package", [f"artifact_dir={work / 'compile'}", f"model_store={store}"], work / "package")
    )
    return store, packaged.model_name


def current_archive(store: Path) -> Path | None:
    """A readable .mar in `store` whose handler is this checkout's handlers/infkit_handler.py."""
    from infkit.errors import InfkitError
    from infkit.serve.core.archives import read_archive

    handler = (ROOT / "handlers/infkit_handler.py").read_bytes()
    for mar in sorted(store.glob("*.mar")):
        try:
            read_archive(mar)
            with zipfile.ZipFile(mar) as z:
                if z.read("infkit_handler.py") == handler:
                    return mar
            print(f"not reusing {mar}: it holds another version of the handler", flush=True)
        except (InfkitError, KeyError, zipfile.BadZipFile) as exc:
            print(f"not reusing {mar}: {exc}", flush=True)
    return None


def train_and_compile(work: Path) -> None:
    from infkit.compile import run as compile_stage
    from infkit.train import run as train_stage
    from infkit.utils.compose import compose_config

    print("training digits_example (a few minutes), compiling to ONNX ...", flush=True)
    trained = train_stage.run(
        compose_config(
            "train",
            ["experiment=digits_example", "~callbacks.rich_progress_bar", "+trainer.enable_progress_bar=false"],
            work / "train",
        )
    )
    print(f"test accuracy {trained.metrics.get('test/acc', float('nan')):.4f}", flush=True)
    compile_stage.run(
        compose_config(
            "trace", ["experiment=digits_example", f"ckpt_path={trained.best_ckpt}", "compile=onnx"], work / "compile"
        )
    )


def wait_healthy(docker: str, name: str, timeout: float = 300.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        state = json.loads(sh([docker, "inspect", "-f", "{{json .State}}", name]).stdout or "{}")
        health = (state.get("Health") or {}).get("Status")
        if not state.get("Running"):
            fail(f"container {name} exited ({state.get('ExitCode')}):\n{logs_tail(docker, name)}")
        if health == "healthy":
            print(f"container healthy after {time.monotonic() - t0:.0f} s (HEALTHCHECK on /ping)", flush=True)
            return
        if health == "unhealthy":  # failing after the start period
            last = ((state.get("Health") or {}).get("Log") or [{}])[-1].get("Output", "").strip()
            fail(f"container {name} is unhealthy; last check: {last[-400:]}\n{logs_tail(docker, name)}")
        time.sleep(3)
    fail(f"container {name} not healthy after {timeout:.0f} s:\n{logs_tail(docker, name)}")


def logs_tail(docker: str, name: str) -> str:
    out = sh([docker, "logs", "--tail", "30", name])
    return (out.stdout + out.stderr)[-4000:]


def serve_and_test(docker: str, image: str, store: Path, model: str) -> tuple[int, str]:
    """Run `image` with `store` mounted read-only and its three ports on free loopback ports, wait for its
    HEALTHCHECK, run tests/test_serve against it, remove the container. (pytest's exit code, its last line)"""
    from infkit.demo import live_tests_command
    from infkit.serve.core.auth import inference_token
    from infkit.serve.core.config import ServerConfig, free_ports

    with tempfile.TemporaryDirectory(prefix="infkit-docker-test-") as tmp:
        work = Path(tmp)
        ports = free_ports("127.0.0.1")
        http, grpc, metrics = ports["inference_port"], ports["grpc_inference_port"], ports["metrics_port"]
        name = f"infkit-docker-test-{os.getpid()}"
        run = [
            docker,
            "run",
            "-d",
            "--name",
            name,
            "-p",
            f"127.0.0.1:{http}:8080",
            "-p",
            f"127.0.0.1:{grpc}:7070",
            "-p",
            f"127.0.0.1:{metrics}:8082",
            "-v",
            f"{store}:/home/model-server/model-store:ro",
            image,
        ]
        print("$ " + " ".join(run), flush=True)
        started = sh(run)
        if started.returncode != 0:
            fail(f"docker run failed: {started.stderr.strip()}")
        try:
            wait_healthy(docker, name)
            keys = sh([docker, "exec", name, "cat", "/home/model-server/key_file.json"])
            key_file = work / "key_file.json"
            key_file.write_text(keys.stdout)
            if not inference_token(key_file):
                fail(f"no inference key in the container's key_file.json: {keys.stdout[:200]} {keys.stderr[:200]}")
            # the host ports the container's 8080 / 7070 / 8082 are published on
            host = ServerConfig().replace(inference_port=http, grpc_inference_port=grpc, metrics_port=metrics)
            tests = live_tests_command(host, model, key_file)
            print("$ " + " ".join(tests), flush=True)
            result = subprocess.run(tests, cwd=ROOT, text=True, capture_output=True, check=False)
            print(result.stdout[-3000:], result.stderr[-2000:], sep="", flush=True)
        finally:
            removed = sh([docker, "rm", "-f", name])
            print(
                f"stopped and removed container {name}"
                if removed.returncode == 0
                else f"warning: could not remove container {name}: {removed.stderr.strip()}",
                flush=True,
            )
    summary = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"docker-test: {summary} against {image}", flush=True)
    return result.returncode, summary


def check_torch_free(docker: str, image: str, size: int, full_size: int | None) -> None:
    """The slim image has no torch (an import in it fails) and is at most a quarter of the CPU image's size."""
    probe = sh([docker, "run", "--rm", "--entrypoint", "python3", image, "-c", "import torch"])
    if probe.returncode == 0:
        fail(f"image {image}: `import torch` works in it; it must hold no torch")
    listed = sh([docker, "run", "--rm", "--entrypoint", "pip", image, "list", "--format", "freeze"]).stdout.lower()
    heavy = [ln for ln in listed.splitlines() if ln.startswith(("torch", "nvidia-", "triton", "torchvision"))]
    if heavy:
        fail(f"image {image} holds {heavy}")
    if full_size and size * 4 > full_size:
        fail(f"image {image} is {size / 1e9:.2f} GB, more than a quarter of the CPU image's {full_size / 1e9:.2f} GB")
    share = f", {size / full_size:.1%} of the CPU image" if full_size else ""
    print(f"image {image}: no torch, torchvision, triton or nvidia package; {size / 1e9:.2f} GB{share}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docker", default=os.environ.get("DOCKER", "docker"), help="docker client (default: docker)")
    p.add_argument("--image", default="infkit:cpu", help="tag of the image to build (default infkit:cpu)")
    p.add_argument(
        "--slim-image",
        default="infkit:ray-onnx",
        help="tag of the torch-free Ray image (docker/Dockerfile.ray-onnx) built and tested beside it",
    )
    p.add_argument("--no-slim", action="store_true", help="build and test the CPU image only")
    p.add_argument("--slim-only", action="store_true", help="build and test the slim image only (no size check)")
    p.add_argument("--model-store", type=Path, help="a folder of .mar files (default: package a digits model)")
    p.add_argument("--model", help="model name to test (with --model-store)")
    p.add_argument("--cuda-wheels", action="store_true", help="install requirements.lock's CUDA set whole")
    p.add_argument("--no-pod-check", action="store_true", help="skip the k8s pod check (docker/pod_check.py)")
    args = p.parse_args(argv)
    if bool(args.model_store) != bool(args.model):
        fail("--model-store and --model go together, e.g. --model-store model_store --model digits_resnet18_onnx")
    if args.no_slim and args.slim_only:
        fail("--no-slim and --slim-only exclude each other")
    from infkit.serve.core.config import free_ports

    t_start = time.monotonic()
    check_engine(args.docker)
    from base_image import base_image

    base = base_image(args.docker, fail)
    full_size = None
    if not args.slim_only:
        full_size = build(args.docker, args.image, base, args.cuda_wheels)
        check_image(args.docker, args.image)
    if not args.no_slim:
        slim_size = build(args.docker, args.slim_image, base, False, "docker/Dockerfile.ray-onnx")
        check_image(args.docker, args.slim_image)
        check_torch_free(args.docker, args.slim_image, slim_size, full_size)
    if args.model_store:
        store, model = args.model_store.resolve(), args.model
    else:
        store, model = package_digits(ROOT / "logs" / "docker-test" / "digits")
    unreadable = [
        p
        for p in (store, *store.glob("*.mar"))
        if (need := 0o005 if p.is_dir() else 0o004) and p.stat().st_mode & need != need
    ]
    if unreadable:  # the container's user (uid 1000) reads the store mounted from here
        fail(f"{unreadable[0]} is not readable by other users; the container's user needs it: chmod o+rX it")
    images = ([] if args.slim_only else [args.image]) + ([] if args.no_slim else [args.slim_image])
    results = {image: serve_and_test(args.docker, image, store, model) for image in images}
    pod = None
    if not args.slim_only and results[args.image][0] == 0 and not args.no_pod_check:
        import pod_check  # beside this script

        pod = pod_check.run(args.docker, args.image, store, model, free_ports("127.0.0.1"))
    print(
        f"docker-test done in {time.monotonic() - t_start:.0f} s: "
        + "; ".join(f"{image} {summary}" for image, (_, summary) in results.items())
        + f"; pod check { {None: 'skipped', 0: 'passed', 1: 'FAILED'}[pod] }",
        flush=True,
    )
    return max(code for code, _ in results.values()) or (pod or 0)


if __name__ == "__main__":
    sys.exit(main())
