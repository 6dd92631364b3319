"""TorchScript is deliberate here (Neuron artifacts are TorchScript too): silence its deprecation notices."""

from __future__ import annotations

import contextlib
import warnings


@contextlib.contextmanager
def torchscript_quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        yield
