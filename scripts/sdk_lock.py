"""requirements.lock -> requirements-sdk.lock: the same pins without the packages an SDK environment brings.

A Neuron environment (torch-neuronx on Inf2/Trn1) ships its own torch, torchvision and numpy (its compiler pins
numpy); installing infkit with `pip install -c requirements-sdk.lock -e .` pins everything else infkit adds and
leaves those alone, because pyproject.toml's ranges admit the SDK's versions.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# what the SDK environment owns: torch and its companions, the CUDA wheels of PyPI's torch, numpy
SDK_OWNED = re.compile(r"^(torch|torchvision|triton|numpy|nvidia-[\w.-]+|cuda-[\w.-]+)==", re.IGNORECASE)


def without_sdk(lock_text: str) -> str:
    """Drop each SDK-owned pin together with its indented '# via' lines."""
    blocks: list[list[str]] = []
    for line in lock_text.splitlines():
        if line.startswith(" ") and blocks:
            blocks[-1].append(line)
        else:
            blocks.append([line])
    kept = [line for block in blocks if not SDK_OWNED.match(block[0]) for line in block]
    header = "# requirements.lock without torch, torchvision, numpy and torch's CUDA wheels (written by make lock)\n"
    return header + "\n".join(kept) + "\n"


def main(argv: list[str]) -> int:
    src, dst = (Path(a) for a in (argv or ["requirements.lock", "requirements-sdk.lock"]))
    dst.write_text(without_sdk(src.read_text()))
    print(f"wrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
