"""Run TorchServe on loopback: python src/serve.py start|stop|status [serve.server.inference_port=9080 ...]"""

import json
import shlex
import sys

from omegaconf import OmegaConf

from infkit.errors import InfkitError
from infkit.serve import server
from infkit.serve.config import ServerConfig
from infkit.utils.compose import compose_config

USAGE = "usage: python src/serve.py start|stop|status [hydra overrides, e.g. models=[digits_resnet18_onnx]]"


def stop_command(overrides: list[str]) -> str:
    """The exact command that stops this server: the user's own overrides that say where its state lives."""
    where = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in ("state_dir", "paths.log_dir", "paths.root_dir")]
    return " ".join(["python src/serve.py stop", *map(shlex.quote, where)])


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("start", "stop", "status"):
        print(USAGE, file=sys.stderr)
        return 2
    action, overrides = argv[0], argv[1:]
    cfg = compose_config("serve", overrides, output_dir=".")
    state_dir = cfg.state_dir
    if action == "start":
        srv = ServerConfig.from_mapping(OmegaConf.to_container(cfg.serve.server, resolve=True))
        strict = cfg.serve.get("strict_models")
        state = server.start(srv, cfg.model_store, state_dir, list(cfg.models),
                             strict=None if strict is None else bool(strict), stop_command=stop_command(overrides))
        print(f"TorchServe is up (pid {state['pid']}): models {', '.join(state['models'])}")
        for name, why in state["failed"].items():
            print(f"  NOT SERVED     {name}: {why}")
        for name, url in state["urls"].items():
            print(f"  {name:<15}{url}")
        print(f"  key file       {state['key_file']}" if srv.token_auth else "  token auth     OFF")
        print(f"  logs           {state['state_dir']}/logs")
        print(f"stop it with: {stop_command(overrides)}")
    elif action == "stop":
        print(server.stop(state_dir).message)
    else:
        info = server.status(state_dir)
        print(json.dumps(info, indent=2))
        return 0 if info["running"] else 3
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except InfkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
