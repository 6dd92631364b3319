"""Run TorchServe on loopback: python src/serve.py start|stop|status [serve.server.inference_port=9080 ...]"""

import json
import sys

from omegaconf import OmegaConf

from infkit.errors import InfkitError
from infkit.serve import server
from infkit.utils.compose import compose_config

USAGE = "usage: python src/serve.py start|stop|status [hydra overrides, e.g. models=[digits_resnet18_onnx]]"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("start", "stop", "status"):
        print(USAGE, file=sys.stderr)
        return 2
    action, overrides = argv[0], argv[1:]
    cfg = compose_config("serve", overrides, output_dir=".")
    srv = OmegaConf.to_container(cfg.serve.server, resolve=True)
    state_dir = cfg.state_dir
    if action == "start":
        state = server.start(srv, cfg.model_store, state_dir, list(cfg.models),
                             min_workers=int(cfg.serve.model.minWorkers))
        print(f"TorchServe is up (pid {state['pid']}): models {', '.join(state['models'])}")
        for name, url in state["urls"].items():
            print(f"  {name:<15}{url}")
        print(f"  key file       {state['key_file']}" if srv.get("token_auth", True) else "  token auth     OFF")
        print(f"  logs           {state['state_dir']}/logs")
        print("stop it with: python src/serve.py stop")
    elif action == "stop":
        print("TorchServe stopped" if server.stop(state_dir) else f"no TorchServe running from {state_dir}")
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
