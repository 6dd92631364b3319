"""Which Neuron stack this machine has, without importing any SDK: installed packages (package metadata), the EC2
instance type (the DMI product name EC2 publishes, readable offline), and, once an SDK is imported, its devices.

Facts as of Neuron 2.34 (2026-11-30): torch-neuron (Inf1) is no longer supported; torch-neuronx 2.9.0.2.15.x is the
XLA-based line for Inf2/Trn1 (maintenance since 2.31); torch-neuronx 2.13.3.0.* / 2.14.3.0.* is TorchNeuron, the
native backend, for Trn2/Trn3 only (public beta since 2.33). docs/inferentia.md has the table."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

#: EC2 writes the instance type (e.g. "inf2.xlarge") here on Nitro instances
DMI_PRODUCT_NAME = Path("/sys/devices/virtual/dmi/id/product_name")
#: instance families by the Neuron stack they get
XLA_FAMILIES = ("inf2", "trn1", "trn1n")
NATIVE_FAMILIES = ("trn2", "trn2u", "trn3")
INF1_FAMILIES = ("inf1",)
#: the first torch-neuronx release of the native line (2.13.3.0.*); the XLA line ends at 2.9
NATIVE_FROM = (2, 13)


def installed(distribution: str) -> str | None:
    """The installed version of a pip package, or None (nothing is imported)."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def torch_neuronx_line(ver: str | None) -> str | None:
    """ "native" (TorchNeuron, Trn2/Trn3) or "xla" (torch_neuronx.trace, Inf2/Trn1) for a torch-neuronx version."""
    if not ver:
        return None
    numbers = re.findall(r"\d+", ver)[:2]
    if len(numbers) < 2:
        return None
    return "native" if tuple(int(n) for n in numbers) >= NATIVE_FROM else "xla"


def instance_type(path: Path | None = None) -> str | None:
    """The EC2 instance type (e.g. "trn2.48xlarge"), or None off EC2 or where it cannot be read."""
    try:
        text = Path(path or DMI_PRODUCT_NAME).read_text().strip()
    except OSError:
        return None
    return text if re.fullmatch(r"[a-z][a-z0-9-]*\.[a-z0-9-]+", text) else None


def family(itype: str | None) -> str | None:
    return itype.split(".", 1)[0] if itype else None


def neuron_devices() -> int:
    """How many `neuron` devices torch sees once TorchNeuron is imported (torch.neuron.is_available/device_count);
    0 where the device module is missing."""
    import torch

    module = getattr(torch, "neuron", None)
    try:
        return int(module.device_count()) if module is not None and module.is_available() else 0
    except Exception:
        return 0
