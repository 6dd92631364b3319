"""The Ray engine's settings (`serve.ray`) and the standard Serve config file built from the .mar files.

serve_config.yaml (written next to the state) is what Ray's own tools read: `serve deploy serve_config.yaml`, or
KubeRay's RayService `serveConfigV2`. One application per model (its deployment built from the archive) and one
ingress application on route prefix "/" that answers TorchServe's routes. The mapping from model-config.yaml:

    minWorkers            -> num_replicas (autoscaling_config.min_replicas when maxWorkers is larger)
    maxWorkers            -> autoscaling_config.max_replicas
    batchSize             -> @serve.batch max_batch_size           (user_config.batch_size)
    maxBatchDelay (ms)    -> @serve.batch batch_wait_timeout_s     (user_config.batch_wait_timeout_s)
    handler.threads       -> ray_actor_options.num_cpus (null: cores // minWorkers, as TorchServe's handler does)
    serve.ray.max_replicas_per_node -> max_replicas_per_node (replicas of one model spread over the nodes)
    Neuron artifacts      -> ray_actor_options.resources.neuron_cores = the pipeline cores (data_parallel: all)
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from infkit.errors import InfkitError
from infkit.utils.cpu import usable_cores

SERVE_CONFIG = "serve_config.yaml"
INGRESS_APP = "infkit"
MODEL_APP_PREFIX = "infkit-"
#: the gRPC servicer TorchServe's inference API is registered with: infkit's own module (stubs generated from proto/
#: where it is imported), so that a cluster's proxy finds it without infkit's state folder (serve.ray.address)
GRPC_SERVICER = "infkit.serve.ray.grpc_servicer.add_InferenceAPIsServiceServicer_to_server"
#: where replicas keep their request counts current for the metrics port (app.LiveCounts), under the state folder
COUNTERS_DIR = "counters"


@dataclass(frozen=True)
class RaySettings:
    """`serve.ray` of configs/serve/default.yaml."""

    #: null: a private Ray started for this server (loopback, stopped with it); "host:port": an existing cluster's GCS
    #: (its applications are deployed there; stop deletes them and never stops the cluster)
    address: str | None = None
    #: CPUs the private Ray offers; null: the cores this process may use
    num_cpus: int | None = None
    #: the private Ray's object store (requests and answers are small: it holds little)
    object_store_mb: int = 128
    #: Ray's and Serve's own log level (WARNING keeps the logs quiet)
    log_level: str = "WARNING"
    #: how often Ray's processes report metrics (ms); shorter: fresher /metrics, more idle CPU
    metrics_report_ms: int = 1000
    #: requests one model replica holds at once (queued for a batch plus running); null: 2 x batchSize
    max_ongoing_requests: int | None = None
    #: the ingress replicas (HTTP/gRPC routing, auth, limits; no model); null: 1, or none when the private Ray serves
    #: one model (its application answers every route; /ping then waits behind predictions in the replicas' queue)
    ingress_replicas: int | None = None
    #: NeuronCores the machine offers to Ray (private Ray only); null: serve.neuron.cores
    neuron_cores: int | None = None
    #: extra custom resources each model replica asks for, e.g. {"node_a": 1}: placement on chosen nodes
    replica_resources: dict = field(default_factory=dict)
    #: custom resources the private Ray's head offers (with replica_resources: how many replicas it takes)
    resources: dict = field(default_factory=dict)
    #: at most this many replicas of one model on one node (Serve's max_replicas_per_node); null: no limit.
    #: 1 spreads a model's replicas over as many nodes (one node down takes one replica with it)
    max_replicas_per_node: int | None = None
    #: what takes HTTP and gRPC requests on the private Ray: "haproxy" (Serve's HAProxy ingress: HAProxy routes each
    #: request straight to a replica's own server) or "proxy" (Serve's Python proxy, one actor call per request).
    #: A cluster (address) keeps whatever its own Ray runs
    ingress: str = "haproxy"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> RaySettings:
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InfkitError(f"unknown serve.ray key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        out = cls(**{k: (dict(v) if k in ("replica_resources", "resources") else v) for k, v in values.items()})
        for key in ("num_cpus", "neuron_cores", "max_ongoing_requests", "max_replicas_per_node"):
            value = getattr(out, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InfkitError(f"serve.ray.{key}={value!r}; give a whole number >= 1 or null")
        if out.ingress not in INGRESSES:
            raise InfkitError(f"serve.ray.ingress={out.ingress!r}; choose {' or '.join(INGRESSES)}")
        if out.object_store_mb < 64:
            raise InfkitError(f"serve.ray.object_store_mb={out.object_store_mb}; Ray needs 64 or more (default 128)")
        if (out.ingress_replicas is not None and out.ingress_replicas < 1) or out.metrics_report_ms < 100:
            raise InfkitError("serve.ray.ingress_replicas must be >= 1 or null and serve.ray.metrics_report_ms >= 100")
        return out

    def as_dict(self) -> dict:
        return asdict(self)


#: serve.ray.ingress values
INGRESSES = ("haproxy", "proxy")


@dataclass(frozen=True)
class ModelSpec:
    """One archive as the Ray engine serves it: where it is, its handler options and its Serve deployment."""

    name: str
    archive: str
    version: str
    handler: dict
    min_replicas: int
    max_replicas: int
    batch_size: int
    batch_wait_timeout_s: float
    num_cpus: float
    threads: int
    max_ongoing_requests: int
    resources: dict
    max_image_bytes: int
    max_replicas_per_node: int | None = None

    def deployment(self) -> dict:
        """The deployment entry of serve_config.yaml."""
        out: dict[str, Any] = {
            "name": "InfkitModel",
            "max_ongoing_requests": self.max_ongoing_requests,
            # a model that cannot load fails at once (the same archive fails the same way again)
            "max_constructor_retry_count": 1,
            "user_config": {"batch_size": self.batch_size, "batch_wait_timeout_s": self.batch_wait_timeout_s},
            "ray_actor_options": {
                "num_cpus": self.num_cpus,
                **({"resources": self.resources} if self.resources else {}),
            },
        }
        if self.max_replicas_per_node:
            out["max_replicas_per_node"] = self.max_replicas_per_node
        if self.max_replicas > self.min_replicas:
            out["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "initial_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": max(1, self.batch_size),
            }
        else:
            out["num_replicas"] = self.min_replicas
        return out


def read_mar(path: Path) -> tuple[dict, dict, dict]:
    """(MAR-INF manifest, model-config.yaml, infkit manifest.json) of an archive (already checked readable)."""
    with zipfile.ZipFile(path) as mar:
        meta = json.loads(mar.read("MAR-INF/MANIFEST.json"))
        config_name = (meta.get("model") or {}).get("configFile")
        config = yaml.safe_load(mar.read(config_name)) if config_name in mar.namelist() else {}
        manifest = json.loads(mar.read("manifest.json")) if "manifest.json" in mar.namelist() else {}
    return meta, config if isinstance(config, dict) else {}, manifest


def model_spec(
    name: str, archive: Path, settings: RaySettings, cores: int | None = None, neuron: Mapping | None = None
) -> ModelSpec:
    """The Serve deployment of one archive, from its model-config.yaml (see the module's table)."""
    from infkit.serve import neuron_cores  # imports torch (through infkit.compile): only when a model is read

    meta, config, manifest = read_mar(archive)
    handler = dict(config.get("handler") or {})
    min_workers = max(1, int(config.get("minWorkers") or 1))
    max_workers = max(min_workers, int(config.get("maxWorkers") or min_workers))
    threads = int(handler.get("threads") or max(1, (cores or usable_cores()) // min_workers))
    batch_size = max(1, int(config.get("batchSize") or 1))
    resources = dict(settings.replica_resources)
    layout = str(handler.get("neuron_layout") or "per_worker")
    if manifest and neuron_cores.is_neuron(manifest):
        neuron_cores.check_layout(layout, manifest)
        if layout == "data_parallel":  # one replica holding every NeuronCore of the machine
            total = settings.neuron_cores or (neuron or {}).get("cores")
            if not total:
                raise InfkitError(
                    "serve.neuron.layout=data_parallel on the Ray engine needs the machine's NeuronCores: set "
                    "serve.neuron.cores (e.g. 2 on inf2.xlarge) or serve.ray.neuron_cores"
                )
            resources["neuron_cores"] = int(total)
            min_workers = max_workers = 1
        else:
            resources["neuron_cores"] = neuron_cores.cores_per_worker(manifest)
    return ModelSpec(
        name=name,
        archive=str(Path(archive).resolve()),
        version=str((meta.get("model") or {}).get("modelVersion") or "1.0"),
        handler=handler,
        min_replicas=min_workers,
        max_replicas=max_workers,
        batch_size=batch_size,
        batch_wait_timeout_s=max(0.0, float(config.get("maxBatchDelay") or 0)) / 1000.0,
        num_cpus=float(threads),
        threads=threads,
        max_ongoing_requests=settings.max_ongoing_requests or max(2, 2 * batch_size),
        resources=resources,
        max_image_bytes=int(handler.get("max_image_bytes") or 10 * 1024 * 1024),
        max_replicas_per_node=settings.max_replicas_per_node,
    )


def model_app_name(model: str) -> str:
    return f"{MODEL_APP_PREFIX}{model}"


def serve_config(
    specs: Mapping[str, ModelSpec],
    settings: RaySettings,
    http: tuple[str, int],
    grpc_port: int,
    key_file: str | None,
    max_request_size: int,
    state_dir: str,
    model_routes: bool = False,
) -> dict:
    """A standard Serve config (ServeDeploySchema): http/grpc options, one application per model and the ingress.
    `model_routes` (the private Ray): each model application answers its own /predictions/<model> route, one actor
    call per request instead of two; its gRPC calls then need bind/sitecustomize.py (INFKIT_RAY_GRPC_APP), since
    Serve's gRPC proxy wants an application name once several applications have routes. Off (a cluster, KubeRay):
    everything goes through the ingress, and gRPC clients need no Serve metadata. With `model_routes` and one model,
    that model's application is the only one: route prefix /, every route and gRPC answered by its replicas, and no
    ingress application (one Ray worker process fewer, the ingress replica: about 160 MiB), unless
    serve.ray.ingress_replicas asks for ingress replicas."""
    counters = str(Path(state_dir) / COUNTERS_DIR) if model_routes else None
    stubs = str(Path(state_dir) / "grpc")
    alone = model_routes and len(specs) == 1 and settings.ingress_replicas is None
    apps = [
        {
            "name": model_app_name(s.name),
            "import_path": "infkit.serve.ray.app:model_app",
            # the model answers its own /predictions/<model> route: one actor call per request (see app.py)
            "route_prefix": "/" if alone else f"/predictions/{s.name}" if model_routes else None,
            "args": {
                "name": s.name,
                "archive": s.archive,
                "threads": s.threads,
                "handler": s.handler,
                **(
                    {
                        "http": {
                            "key_file": key_file,
                            "max_request_size": int(max_request_size),
                            "version": s.version,
                            "counters_dir": counters,
                            **({"stubs_dir": stubs} if alone else {}),
                        }
                    }
                    if model_routes
                    else {}
                ),
            },
            "deployments": [s.deployment()],
        }
        for s in specs.values()
    ]
    if not alone:
        apps.append(
            {
                "name": INGRESS_APP,
                "import_path": "infkit.serve.ray.app:ingress_app",
                "route_prefix": "/",
                "args": {
                    "models": {s.name: {"app": model_app_name(s.name), "version": s.version} for s in specs.values()},
                    "key_file": key_file,
                    "max_request_size": int(max_request_size),
                    "stubs_dir": stubs,
                    **({"counters_dir": counters} if counters else {}),
                },
                "deployments": [
                    {
                        "name": "InfkitIngress",
                        "num_replicas": settings.ingress_replicas or 1,
                        "max_ongoing_requests": 1000,
                        "ray_actor_options": {"num_cpus": 0},
                    }
                ],
            }
        )
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": http[0], "port": int(http[1])},
        "grpc_options": {"port": int(grpc_port), "grpc_servicer_functions": [GRPC_SERVICER]},
        "logging_config": {"log_level": settings.log_level.upper(), "enable_access_log": False},
        "applications": apps,
    }


def write_serve_config(state_dir: Path, config: dict) -> Path:
    path = Path(state_dir) / SERVE_CONFIG
    path.write_text(
        "# written by `infkit serve start serve.engine=ray`; usable as is by `serve deploy` and as KubeRay's "
        "serveConfigV2\n" + yaml.safe_dump(config, sort_keys=False)
    )
    return path
