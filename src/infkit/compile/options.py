"""Compile options from configs/compile/*.yaml: every key must be one the backend declares (Backend.option_names).

A typo such as `compile.fallbak=false` would otherwise be ignored silently and compile something else than asked."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from infkit.compile.base import Backend
from infkit.compile.registry import AUTO_ORDER, get_backend
from infkit.errors import InfkitError

log = logging.getLogger(__name__)

#: read by the compile stage itself, whatever the backend (min_top1_agreement: the backend's own parity threshold,
#: read by trace.yaml's parity.min_top1_agreement)
COMMON = frozenset({"batch_sizes", "min_top1_agreement"})


def declared(backend: Backend) -> frozenset[str]:
    names = getattr(backend, "option_names", None)
    if names is None:  # a programming error in a new backend, not a user's: say where to fix it
        raise InfkitError(
            f"backend {backend.name!r} declares no option_names; add the class attribute "
            "(the keys of its configs/compile/*.yaml besides backend and batch_sizes)"
        )
    return frozenset(names)


def valid_names(requested: str) -> frozenset[str]:
    """The option names `compile=<requested>` accepts; for auto, those of every backend auto may pick."""
    names = AUTO_ORDER if requested == "auto" else (requested,)
    return COMMON.union(*(declared(get_backend(n)) for n in names))


def check(requested: str, options: Mapping[str, Any]) -> None:
    """Raise when a key is not an option of `compile=<requested>`, naming the valid ones.
    Needs no SDK: it runs before any backend is resolved."""
    unknown = sorted(set(options) - valid_names(requested))
    if unknown:
        valid = ", ".join(sorted(valid_names(requested)))
        raise InfkitError(
            f"compile option(s) {', '.join(unknown)} unknown to compile={requested}; "
            f"valid: {valid} (a typo? see configs/compile/{requested}.yaml)"
        )


def for_backend(backend: Backend, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options the chosen backend reads; with compile=auto the other candidates' keys are left out (logged)."""
    mine = COMMON | declared(backend)
    dropped = sorted(k for k in options if k not in mine)
    if dropped:
        log.info("compile=auto: %s ignores %s (options of the other candidates)", backend.name, ", ".join(dropped))
    return {k: v for k, v in options.items() if k in mine}


def dynamic_batch(options: Mapping[str, Any]) -> bool:
    """True when a static-shape backend is asked to batch dynamically: one artifact, larger batches run in chunks
    of its compiled size (torch-neuron's dynamic_batch_size, torch-neuronx's dynamic_batch)."""
    return bool(options.get("dynamic_batch_size") or options.get("dynamic_batch"))
