"""compile=auto: the backend for what is installed *and* where this runs.

- neuron_native (TorchNeuron) only where it is installed and its `neuron` device exists, and never on an instance
  family it does not support (Inf1, Inf2, Trn1);
- neuronx (XLA torch-neuronx 2.9) on Inf2/Trn1, or off EC2 where it imports; never on Trn2/Trn3, where XLA
  inference ended in Neuron 2.34;
- neuron (torch-neuron) on Inf1, or off EC2 where it imports;
- torchscript everywhere else.
It says which it chose and why, and why each other candidate was passed over."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from infkit.compile import neuron_stack
from infkit.compile.base import Backend
from infkit.errors import InfkitError

log = logging.getLogger(__name__)

#: the order auto considers them in
ORDER = ("neuron_native", "neuronx", "neuron", "torchscript")


@dataclass
class Choice:
    backend: str
    why: str
    skipped: list[str] = field(default_factory=list)
    instance_type: str | None = None

    def line(self) -> str:
        passed = f"; passed over: {'; '.join(self.skipped)}" if self.skipped else ""
        return f"compile=auto chose {self.backend}: {self.why}{passed}"

    def record(self) -> dict:
        return {"chose": self.backend, "why": self.why, "skipped": self.skipped, "instance_type": self.instance_type}


def _where(itype: str | None) -> str:
    return f"on {itype}" if itype else "instance type unknown (not EC2, or DMI unreadable)"


def _rule_out(name: str, fam: str | None) -> str | None:
    """Why `name` must not run on this instance family (None: allowed, or the family is unknown)."""
    if fam is None:
        return None
    if name == "neuron_native" and fam not in neuron_stack.NATIVE_FAMILIES:
        return f"TorchNeuron runs on Trn2/Trn3 only, this is {fam}"
    if name == "neuronx" and fam in neuron_stack.NATIVE_FAMILIES:
        return f"XLA inference on {fam} ended in Neuron 2.34 (use TorchNeuron, compile=neuron_native)"
    if name == "neuronx" and fam not in neuron_stack.XLA_FAMILIES:
        return f"torch-neuronx (XLA) runs on Inf2/Trn1, this is {fam}"
    if name == "neuron" and fam not in neuron_stack.INF1_FAMILIES:
        return f"torch-neuron runs on Inf1 only, this is {fam}"
    return None


def _installed(name: str) -> str | None:
    """Why `name`'s SDK is not installed (package metadata only: nothing imported), or None."""
    if name == "neuron":
        return None if neuron_stack.installed("torch-neuron") else "torch-neuron not installed"
    if name in ("neuronx", "neuron_native"):
        ver = neuron_stack.installed("torch-neuronx")
        want = "native" if name == "neuron_native" else "xla"
        line = neuron_stack.torch_neuronx_line(ver)
        if line is None:
            return "torch-neuronx not installed"
        if line != want:
            return f"torch-neuronx {ver} is the {line} line"
    return None


def choose(
    get_backend: Callable[[str], Backend],
    prepare: Callable[[Backend], None] | None = None,
    itype: str | None = None,
) -> tuple[Backend, Choice]:
    """The backend auto picks here. `prepare(backend)` runs before a backend's SDK is first imported (for
    neuron_native: its environment variables)."""
    itype = itype or neuron_stack.instance_type()
    fam = neuron_stack.family(itype)
    skipped = []
    for name in ORDER:
        why_not = _rule_out(name, fam) or _installed(name)
        if why_not is None:
            backend = get_backend(name)
            if prepare is not None and getattr(backend, "env_before_import", False):
                prepare(backend)
            why_not = backend.unavailable_reason()
            if why_not is None:
                why = (
                    "no Neuron SDK usable here; runs on any CPU"
                    if name == "torchscript"
                    else f"its SDK is installed and imports, {_where(itype)}"
                )
                choice = Choice(name, why, skipped, itype)
                log.info("%s", choice.line())
                return backend, choice
        skipped.append(f"{name} ({why_not.split('; ')[0]})")
    raise InfkitError(f"compile=auto found no usable backend: {'; '.join(skipped)}")  # torchscript is always there
