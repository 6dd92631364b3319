"""The serveConfigV2 of a KubeRay RayService (k8s/ray/rayservice-*.yml) for the .mar files of a model store.

    .venv/bin/python k8s/ray/serve_config_v2.py model_store --node-cpus 2                     # the CPU workers
    .venv/bin/python k8s/ray/serve_config_v2.py model_store --node-cpus 2 --neuron-cores 2    # inf2.xlarge workers

Prints the Serve config to paste under `serveConfigV2: |`. It is the serve_config.yaml that `infkit serve start
serve.engine=ray` writes (infkit.serve.ray.config: one application per archive, the ingress `infkit` on "/"), with
what differs on a cluster:

- the archives' paths are where the Ray pods have them (--node-model-store: the model store baked into the image);
- the key file is in --state-dir, written by the pods' prestart script (configmap.yml), the ingress's gRPC stubs too;
- Serve's HTTP proxy on 0.0.0.0:8000 and its gRPC proxy on 9000 (the container ports named serve and serve-grpc,
  which KubeRay puts on the <name>-serve-svc Service), one proxy on every node that has a replica (EveryNode: KubeRay
  sends traffic to every pod whose proxy is healthy, which HeadOnly would leave without one);
- replica threads default to the CPUs of one worker pod (--node-cpus) // minWorkers, not to this machine's cores.

Models are read here, on this machine: the archives must be the ones baked into the image.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import yaml

#: where the image has the model store (docker/Dockerfile.cpu: /home/model-server/model-store)
NODE_MODEL_STORE = "/home/model-server/model-store"
#: an emptyDir in each Ray pod: key_file.json (the prestart script writes it) and the ingress's grpc/ stubs
STATE_DIR = "/home/model-server/ray-state"
HTTP = ("0.0.0.0", 8000)
GRPC_PORT = 9000
PROXY_LOCATION = "EveryNode"


def serve_config_v2(
    model_store: Path,
    node_cpus: int,
    models: list[str] | None = None,
    node_model_store: str = NODE_MODEL_STORE,
    state_dir: str = STATE_DIR,
    neuron_cores: int | None = None,
) -> dict:
    from infkit.errors import InfkitError
    from infkit.serve.core.archives import check_models
    from infkit.serve.core.auth import KEY_FILE
    from infkit.serve.core.config import ServerConfig
    from infkit.serve.ray.config import RaySettings, model_spec, serve_config

    settings = RaySettings(neuron_cores=neuron_cores)
    archives, failed = check_models(Path(model_store), list(models or []))
    if failed:
        raise InfkitError("cannot serve " + "; ".join(f"{m}.mar: {why}" for m, why in failed.items()))
    specs = {}
    for name, archive in archives.items():
        spec = model_spec(name, archive.path, settings, cores=node_cpus, neuron={"cores": neuron_cores})
        specs[name] = dataclasses.replace(spec, archive=f"{node_model_store.rstrip('/')}/{name}.mar")
    limit = ServerConfig().request_limit(max(s.max_image_bytes for s in specs.values()))
    config = serve_config(specs, settings, HTTP, GRPC_PORT, f"{state_dir}/{KEY_FILE}", limit, state_dir)
    config["proxy_location"] = PROXY_LOCATION
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_store", type=Path, help="the folder of .mar files baked into the Ray image")
    parser.add_argument("--node-cpus", type=int, required=True, help="CPUs of one worker pod (its cpu request)")
    parser.add_argument("--models", default="", help="comma-separated model names (default: every .mar)")
    parser.add_argument("--node-model-store", default=NODE_MODEL_STORE)
    parser.add_argument("--state-dir", default=STATE_DIR)
    parser.add_argument("--neuron-cores", type=int, default=None, help="NeuronCores of one worker pod")
    args = parser.parse_args(argv)
    from infkit.errors import InfkitError

    try:
        config = serve_config_v2(
            args.model_store,
            args.node_cpus,
            [m for m in args.models.split(",") if m],
            args.node_model_store,
            args.state_dir,
            args.neuron_cores,
        )
    except InfkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(yaml.safe_dump(config, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
