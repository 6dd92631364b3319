"""infkit serve / python src/serve.py: start | stop | status a server on loopback, TorchServe or Ray Serve
(serve.engine=torchserve|ray; Hydra overrides follow the action). stop and status find the engine in the state."""

from __future__ import annotations

import json
import shlex
import sys

from infkit.cli._common import guarded


def invoked_as() -> str:
    """How the user called this: the original script or the console command (used in printed hints)."""
    return "python src/serve.py" if sys.argv and sys.argv[0].endswith("serve.py") else "infkit serve"


def stop_command(overrides: list[str]) -> str:
    """The exact command that stops this server: the user's own overrides that say where its state lives."""
    where = [
        o for o in overrides if o.split("=", 1)[0].lstrip("+~") in ("state_dir", "paths.log_dir", "paths.root_dir")
    ]
    return " ".join([f"{invoked_as()} stop", *map(shlex.quote, where)])


@guarded
def main(argv: list[str] | None = None) -> int:
    from omegaconf import OmegaConf

    from infkit.serve import engine as engines
    from infkit.serve.core.config import ServerConfig
    from infkit.utils.compose import compose_config

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("start", "stop", "status"):
        print(
            f"usage: {invoked_as()} start|stop|status [hydra overrides, e.g. models=[digits_resnet18_onnx]]",
            file=sys.stderr,
        )
        return 2
    action, overrides = argv[0], argv[1:]
    cfg = compose_config("serve", overrides, output_dir=".")
    state_dir = cfg.state_dir
    if action == "start":
        srv = ServerConfig.from_mapping(OmegaConf.to_container(cfg.serve.server, resolve=True))
        strict = cfg.serve.get("strict_models")
        engine = engines.get_engine(cfg.serve.get("engine"), OmegaConf.to_container(cfg.serve, resolve=True))
        state = engine.start(
            srv,
            cfg.model_store,
            state_dir,
            list(cfg.models),
            strict=None if strict is None else bool(strict),
            stop_command=stop_command(overrides),
        )
        print(f"{engine.label} is up (pid {state['pid']}): models {', '.join(state['models'])}")
        for name, why in state["failed"].items():
            print(f"  NOT SERVED     {name}: {why}")
        for name, url in state["urls"].items():
            print(f"  {name:<15}{url}")
        print(f"  key file       {state['key_file']}" if srv.token_auth else "  token auth     OFF")
        print(f"  logs           {state['state_dir']}/logs")
        print(f"stop it with: {stop_command(overrides)}")
    elif action == "stop":
        print(engines.stop(state_dir).message)
    else:
        info = engines.status(state_dir)
        print(json.dumps(info, indent=2))
        return 0 if info["running"] else 3
    return 0
