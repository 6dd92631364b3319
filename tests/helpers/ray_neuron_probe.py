"""Deploy one model application of infkit's serve_config.yaml onto a running Ray, with the recording Neuron SDK
stand-in inside each replica (tests only), and report what each replica saw:

    python -m tests.helpers.ray_neuron_probe <gcs address> <serve_config.yaml> <application> <image>

Each replica is infkit's own InfkitModel class, built from the application's import_path and args exactly as Serve
builds it, with the deployment options of serve_config.yaml (num_replicas, ray_actor_options: num_cpus and the
neuron_cores resource), wrapped only to install the stand-in first and to report: the NEURON_RT_* environment before
anything of infkit ran (what Ray set), the environment each stand-in module saw at its import, Ray's accelerator ids
for the replica, and one answer. Prints one JSON line: {"replicas": {replica id: report}}. The application is deleted
before it exits."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import yaml

KEYS = ("NEURON_RT_NUM_CORES", "NEURON_RT_VISIBLE_CORES")


def probe_class():
    from ray import serve

    @serve.deployment(name="NeuronProbe")
    class NeuronProbe:
        def __init__(self, import_path: str, args: dict):
            import importlib

            import ray

            self.env_before = {k: os.environ.get(k) for k in KEYS}
            self.accelerators = ray.get_runtime_context().get_accelerator_ids().get("neuron_cores")
            from tests.recording_neuron_sdk.importer import install

            self.sdk, _uninstall = install()
            module, _, attr = import_path.partition(":")
            built = getattr(importlib.import_module(module), attr)(args)  # the Application Serve would deploy
            bound = built._bound_deployment
            self.model = bound.func_or_class(*bound.init_args, **bound.init_kwargs)
            self.replica = serve.get_replica_context().replica_id.unique_id

        async def report(self, image: bytes) -> dict:
            status, answer = await self.model.predict(({"body": image}, False, None, time.time()))
            return {
                "replica": self.replica,
                "pid": os.getpid(),
                "env_before": self.env_before,
                "env_now": {k: os.environ.get(k) for k in KEYS},
                "accelerator_ids": self.accelerators,
                "imports": [[name, env] for name, env in self.sdk.imports],
                "status": status,
                "answer": answer,
            }

    return NeuronProbe


def main(address: str, config_path: Path, app_name: str, image: Path) -> dict:
    import ray
    from ray import serve

    config = yaml.safe_load(config_path.read_text())
    app = next(a for a in config["applications"] if a["name"] == app_name)
    deployment = app["deployments"][0]
    options = {
        k: deployment[k] for k in ("num_replicas", "ray_actor_options", "max_ongoing_requests") if k in deployment
    }
    ray.init(address=address, logging_level="ERROR", log_to_driver=False, namespace="serve")
    serve.start(proxy_location="Disabled")
    handle = serve.run(
        probe_class().options(**options).bind(app["import_path"], app["args"]), name=app_name, route_prefix=None
    )
    body = image.read_bytes()
    reports: dict[str, dict] = {}
    deadline = time.monotonic() + 120
    try:
        while len(reports) < options["num_replicas"] and time.monotonic() < deadline:
            batch = [handle.report.remote(body) for _ in range(4)]
            for response in batch:
                report = response.result(timeout_s=120)
                reports[report["replica"]] = report
    finally:
        serve.delete(app_name)
    return {"replicas": reports}


if __name__ == "__main__":
    out = main(sys.argv[1], Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
    asyncio.set_event_loop(None)
    print(json.dumps(out), flush=True)
