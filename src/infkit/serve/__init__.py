"""Serving, in three parts behind one small lifecycle interface (engine.py: start, stop, status, readiness):

- core/: what every engine serves with, engine-agnostic: decode, runtime, service, explain, overlay, the archives,
  keys, ports, process identity, the nginx front and the gRPC client.
- torchserve/: the TorchServe engine (its lifecycle, Java, logs, readiness); handlers/infkit_handler.py adapts
  TorchServe's handler API to core.service.
- ray/: the Ray Serve engine.

The CLI, the demo, tune, the benchmark and the docker tooling use engine.py and core/ only. The modules' old paths
(infkit.serve.service, infkit.serve.server, ...: serve/ was one folder before) still import, as the very same
module objects, and `python -m infkit.serve.front` still runs: users' scripts and images keep working."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: old module name under infkit.serve -> where it lives now
MOVED = {
    **{
        name: f"{__name__}.core.{name}"
        for name in (
            "archives",
            "auth",
            "config",
            "decode",
            "explain",
            "front",
            "grpc_client",
            "neuron_cores",
            "overlay",
            "process",
            "runtime",
            "service",
        )
    },
    **{name: f"{__name__}.torchserve.{name}" for name in ("java", "logs", "readiness", "server")},
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports infkit.serve.<old name> as the module at its new place (the same object, not a copy)."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, name = fullname.rpartition(".")
        if prefix == __name__ and name in MOVED:
            real = importlib.util.find_spec(MOVED[name])
            return importlib.util.spec_from_loader(fullname, self, origin=real.origin if real else None)
        return None

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name.rpartition(".")[2]])
        spec.loader_state = module.__spec__  # the import system sets __spec__ to the alias's: put it back below
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state  # the module ran at its new place

    def get_code(self, fullname):
        """For `python -m infkit.serve.<old name>`: the code of the module at its new place."""
        spec = importlib.util.find_spec(MOVED[fullname.rpartition(".")[2]])
        return spec.loader.get_code(spec.name)


if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
    sys.meta_path.append(_Alias())
