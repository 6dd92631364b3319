"""The serving engines behind one small lifecycle interface, found by name (`serve.engine=torchserve|ray`).

    engine = get_engine("ray", cfg.serve)          # the serve config section: engine settings, neuron
    state = engine.start(server, model_store, state_dir, models, strict, stop_command, log)
    engine.status(state_dir); engine.stop(state_dir)

start returns the state (engine, pid, pgid, urls, key_file, state_dir, models, failed, server, ...), also saved as
<state_dir>/server.json. stop and status read the engine from that file (a state without "engine" was written by
TorchServe's lifecycle), so `serve stop` stops whatever started there. The CLI, demo, tune and the benchmark use
this module only; an engine's internals stay in its own module (infkit.serve.torchserve.server for TorchServe,
infkit.serve.ray for Ray Serve, imported only when that engine is used)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from infkit.errors import InfkitError
from infkit.serve.core.config import ServerConfig
from infkit.serve.core.process import Stopped, read_state

__all__ = ["ENGINES", "Engine", "Stopped", "engine_of", "get_engine", "status", "stop"]

DEFAULT = "torchserve"


class Engine(Protocol):
    name: str

    def start(
        self,
        server: ServerConfig,
        model_store: Path,
        state_dir: Path,
        models: list[str] | None = None,
        strict: bool | None = None,
        stop_command: str = "python src/serve.py stop",
        log: Callable[[str], None] = print,
    ) -> dict: ...

    def stop(self, state_dir: Path) -> Stopped: ...

    def status(self, state_dir: Path) -> dict: ...


class TorchServeEngine:
    name = "torchserve"
    label = "TorchServe"

    def __init__(self, options: Mapping[str, Any] | None = None):
        self.options = dict(options or {})

    def start(self, server, model_store, state_dir, models=None, strict=None, stop_command="", log=print) -> dict:
        from infkit.serve.torchserve import server as torchserve

        state = torchserve.start(
            server, model_store, state_dir, models, strict, stop_command or "python src/serve.py stop", log
        )
        return {"engine": self.name, **state}

    def stop(self, state_dir: Path) -> Stopped:
        from infkit.serve.torchserve import server as torchserve

        return torchserve.stop(state_dir)

    def status(self, state_dir: Path) -> dict:
        from infkit.serve.torchserve import server as torchserve

        return {"engine": self.name, **torchserve.status(state_dir)}


class RayEngine:
    name = "ray"
    label = "Ray Serve"

    def __init__(self, options: Mapping[str, Any] | None = None):
        """`options`: the serve config section (its `ray:` and `neuron:` mappings are read)."""
        self.options = dict(options or {})

    def _settings(self):
        from infkit.serve.ray.config import RaySettings

        return RaySettings.from_mapping(self.options.get("ray"))

    def start(self, server, model_store, state_dir, models=None, strict=None, stop_command="", log=print) -> dict:
        from infkit.serve.ray import lifecycle

        return lifecycle.start(
            server,
            model_store,
            state_dir,
            models,
            strict,
            stop_command or "python src/serve.py stop",
            log,
            settings=self._settings(),
            neuron=dict(self.options.get("neuron") or {}),
        )

    def stop(self, state_dir: Path) -> Stopped:
        from infkit.serve.ray import lifecycle

        return lifecycle.stop(state_dir)

    def status(self, state_dir: Path) -> dict:
        from infkit.serve.ray import lifecycle

        return {"engine": self.name, **lifecycle.status(state_dir)}


ENGINES: dict[str, type] = {"torchserve": TorchServeEngine, "ray": RayEngine}


def get_engine(name: str | None = None, options: Mapping[str, Any] | None = None) -> Engine:
    """The engine called `name` (serve.engine); `options`: the serve config section it reads its settings from."""
    name = (name or DEFAULT).strip().lower()
    if name not in ENGINES:
        raise InfkitError(f"serve.engine={name!r} is not an engine; choose {' or '.join(ENGINES)}")
    return ENGINES[name](options)


def engine_of(state_dir: Path) -> str:
    """The engine that wrote <state_dir>/server.json (torchserve when the state predates engines, or there is none)."""
    return (read_state(Path(state_dir)) or {}).get("engine") or DEFAULT


def stop(state_dir: Path) -> Stopped:
    return get_engine(engine_of(state_dir)).stop(state_dir)


def status(state_dir: Path) -> dict:
    if read_state(Path(state_dir)) is None:  # nothing started there: no engine to name
        return {"running": False, "state_dir": str(state_dir)}
    return get_engine(engine_of(state_dir)).status(state_dir)
