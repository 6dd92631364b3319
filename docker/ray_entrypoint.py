"""The infkit:ray-onnx container's main process: `infkit serve start serve.engine=ray` on the container's ports,
then wait; `docker stop` (SIGTERM, forwarded by tini) stops the whole Ray tree with `infkit serve stop`.

    python3 /opt/infkit-tools/ray_entrypoint.py [hydra overrides, e.g. serve.ray.num_cpus=4 models=[digits]]

Every .mar in /home/model-server/model-store is served (as TorchServe's image does): REST through nginx on 8080,
gRPC on 7070, metrics on 8082, all on 0.0.0.0 inside the container (publish them on the host's loopback, as for
infkit:cpu). The state folder is the working directory, so key_file.json is where the TorchServe image keeps it and
docker/healthcheck.py sends its inference key. The container exits with the server: non-zero when the server
ended by itself."""

from __future__ import annotations

import signal
import sys
import time

HOME = "/home/model-server"
START = [
    "start",
    "serve.engine=ray",
    f"state_dir={HOME}",
    f"model_store={HOME}/model-store",
    "serve.server.address=0.0.0.0",
    "serve.server.inference_port=8080",
    "serve.server.grpc_inference_port=7070",
    "serve.server.metrics_port=8082",
    # the ingress answers /ping at once, also while the model replicas are saturated (the HEALTHCHECK waits 4 s)
    "serve.ray.ingress_replicas=1",
]


def main(argv: list[str]) -> int:
    import psutil

    from infkit.cli import serve as cli
    from infkit.serve.core.process import read_state, verdict

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    code = cli.main([*START, *argv])
    if code:
        return code
    state = read_state(HOME) or {}
    print(f"serving {', '.join(state.get('models', []))} with Ray Serve; docker stop ends it", flush=True)
    while not stopping:
        if verdict(state) != "ours":
            print("error: the Ray engine's process group ended by itself; its logs are in logs/", file=sys.stderr)
            return 1
        try:
            psutil.Process(int(state["pid"])).wait(timeout=2)
        except psutil.TimeoutExpired:
            pass
        except psutil.NoSuchProcess:
            time.sleep(0.5)
    return cli.main(["stop", f"state_dir={HOME}"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
