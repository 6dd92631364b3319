"""What a result ran on: recorded in every benchmark file."""

from __future__ import annotations

import os
import platform
import socket
import time

from infkit.compile.manifest import library_versions
from infkit.utils.cpu import int8_instructions, usable_cores


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    import torch

    return {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "int8_instructions": int8_instructions(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "accelerators": "cuda" if torch.cuda.is_available() else "none",
        "versions": library_versions(),
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
