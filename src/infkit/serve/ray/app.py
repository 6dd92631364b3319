"""The Ray Serve application: one InfkitModel deployment per .mar (infkit.serve.core.service.Service behind
@serve.batch) and the InfkitIngress, which answers TorchServe's routes, auth and limits over HTTP and TorchServe's gRPC
inference service (proto/inference.proto) through Serve's gRPC proxy. Each model application also answers its own
/predictions/<model> route (its route prefix): Serve's proxy hands those requests straight to a model replica, one
actor call per request instead of two (proxy -> ingress -> model), with the same auth, limits and answers. When the
private Ray serves one model, its application is the only one (route prefix /) and answers every route, gRPC too:
no ingress replica (one Ray process fewer, idle or not).

Built by Serve from serve_config.yaml (import_path infkit.serve.ray.app:model_app / :ingress_app with `args`), so
the same file works with `serve deploy` and KubeRay."""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve.metrics import Counter

from infkit.serve.core.auth import inference_token

MODEL_TAGS = ("model_name",)
#: TorchServe's answer to a missing or wrong token (the same status and words clients already handle)
AUTH_FAILED = {
    "code": 400,
    "type": "InvalidKeyException",
    "message": "Token Authorization failed. Token either incorrect, expired, or not provided correctly",
}


def _counter(name: str, description: str) -> Counter:
    return Counter(name, description=description, tag_keys=MODEL_TAGS)


def _zero(counters: list[Counter], tags: dict) -> None:
    """Show each counter at 0 from the start: Ray exports a series only after its first record, and a series that
    first appears after the request that made it would read as a missing count (TorchServe shows its counters at
    once). Counter.inc refuses 0, so the metric's own record is used."""
    for counter in counters:
        try:
            counter._record(0, tags=tags)
        except Exception:  # a later Ray without _record: the series then appears with its first request
            return


def _add(counter: Counter, value: float, tags: dict) -> None:
    if value > 0:  # Ray's counters refuse 0
        counter.inc(value, tags=tags)


#: the counters kept current in the replicas' files, by their TorchServe names (what the metrics port serves)
REQUESTS, LATENCY, QUEUE = (
    "ts_inference_requests_total",
    "ts_inference_latency_microseconds",
    "ts_queue_latency_microseconds",
)


class LiveCounts:
    """infkit's counters as this replica counted them ({model: {TorchServe's metric name: value}}), kept current in
    <counters_dir>/<owner>.json for the metrics port's process (infkit.serve.ray.head sums the files): Ray exports
    metrics every serve.ray.metrics_report_ms, these are current to the request, so Ray's report period can be long
    (its idle CPU). Nothing is written when the folder does not exist (a replica on another node of a cluster)."""

    def __init__(self, counters_dir: str | None, owner: str, models, names):
        self.counts = {model: dict.fromkeys(names, 0.0) for model in models}
        self.fd = None
        self.width = 0
        if counters_dir and Path(counters_dir).is_dir():
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in owner)
            try:
                self.fd = os.open(Path(counters_dir) / f"{safe}.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            except OSError:
                self.fd = None
        self._write()

    def add(self, model: str, values: dict) -> None:
        count = self.counts.setdefault(model, {})
        for name, value in values.items():
            count[name] = count.get(name, 0.0) + value
        self._write()

    def _write(self) -> None:
        if self.fd is None:
            return
        body = json.dumps(self.counts).encode()
        self.width = max(self.width, len(body))
        try:  # one write at offset 0, padded to the longest so far (JSON allows the trailing spaces)
            os.pwrite(self.fd, body.ljust(self.width), 0)
        except OSError:
            self.fd = None


async def answer_http(request, key: str | None, versions: dict, max_request_size: int, infer):
    """TorchServe's inference routes over HTTP, for the ingress (every model) and for a model's own route:
    `versions` {model: version} names the models answered here; `infer(model, item, explain, content type,
    arrival)` -> (status, body)."""
    parts = [p for p in request.url.path.split("/") if p]
    method = request.method.upper()
    if parts == ["ping"]:
        if method not in ("GET", "POST"):
            return _error(405, "MethodNotAllowedException", "Requested method is not allowed, use GET")
        return _json({"status": "Healthy"})
    if not parts or parts[0] not in ("predictions", "explanations") or len(parts) not in (2, 3):
        return _error(
            404, "ResourceNotFoundException", "Requested resource is not found, please refer to API document."
        )
    if method not in ("POST", "PUT"):
        return _error(
            405, "MethodNotAllowedException", "Requested method is not allowed, please refer to API document."
        )
    if not authorized(key, request.headers.get("authorization")):
        return _json(AUTH_FAILED, 400)
    model = parts[1]
    if model not in versions:
        return _error(404, "ModelNotFoundException", f"Model not found: {model}")
    if len(parts) == 3 and parts[2] != versions[model]:
        return _error(404, "ModelNotFoundException", f"Model version: {parts[2]} does not exist for model: {model}")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_request_size:
        return _too_large(int(length), max_request_size)
    arrived = time.time()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_request_size:
            return _too_large(len(body), max_request_size)
    content_type = request.headers.get("content-type")
    item = await request_item(request, bytes(body), content_type)
    status, answer = await infer(model, item, parts[0] == "explanations", content_type, arrived)
    return _json(answer, status)


def authorized(key: str | None, header: str | None) -> bool:
    if not key:
        return True
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


async def request_item(request, body: bytes, content_type: str | None) -> Any:
    """What TorchServe hands its handler: {"body": the raw bytes or the parsed JSON}, or the multipart fields."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        from starlette.datastructures import UploadFile
        from starlette.requests import Request

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form()
        except Exception:  # a multipart body without its boundary and the like: handed on as bytes
            return {"body": body}
        fields = {}
        for key, value in form.multi_items():
            fields[key] = await value.read() if isinstance(value, UploadFile) else str(value).encode()
        return fields
    if kind == "application/json":
        try:
            return {"body": json.loads(body)}
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"body": body}  # the service names the JSON error
    return {"body": body}


def _failed(exc: Exception) -> tuple[int, dict]:
    """TorchServe's 503 for a failed prediction (the replica died or raised)."""
    return 503, {
        "code": 503,
        "type": "ServiceUnavailableException",
        "message": f"Prediction failed ({type(exc).__name__})",
    }


class GrpcRoutes:
    """TorchServe's gRPC inference service (Serve's gRPC proxy calls these by the RPC's name): Ping, and Predictions
    through `self._infer(model, item, explain, content type, arrival)` for the models in `self.versions`."""

    key: str | None
    versions: dict
    stubs_dir: str | None
    _pb2 = None

    @property
    def pb2(self):
        if self._pb2 is None:
            from infkit.serve.core.grpc_client import generate_stubs

            self._pb2, _ = generate_stubs(self.stubs_dir)
        return self._pb2

    def _grpc_authorized(self, grpc_context) -> bool:
        metadata = dict(grpc_context.invocation_metadata()) if grpc_context is not None else {}
        return authorized(self.key, metadata.get("authorization"))

    async def Ping(self, request, grpc_context=None):
        return self.pb2.TorchServeHealthResponse(health=json.dumps({"status": "Healthy"}))

    async def Predictions(self, request, grpc_context=None):
        import grpc

        if not self._grpc_authorized(grpc_context):
            grpc_context.set_code(grpc.StatusCode.UNAUTHENTICATED)
            grpc_context.set_details(AUTH_FAILED["message"])
            return self.pb2.PredictionResponse()
        model = request.model_name
        if model not in self.versions:
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details(f"Model not found: {model}")
            return self.pb2.PredictionResponse()
        item = {k: bytes(v) for k, v in request.input.items()}
        _status, answer = await self._infer(model, item, False, None, time.time())
        return self.pb2.PredictionResponse(prediction=json.dumps(answer).encode())


@serve.deployment(name="InfkitModel", max_constructor_retry_count=1)
class InfkitModel(GrpcRoutes):
    """One replica = one TorchServe worker: the archive unpacked, the Service loaded, batches through @serve.batch."""

    def __init__(
        self,
        name: str,
        archive: str,
        threads: int,
        handler: dict,
        http: dict | None = None,
    ):
        """`http`: what answering the model's own /predictions/<model> route needs (key_file, max_request_size,
        version, counters_dir; stubs_dir when it is the only application and answers gRPC too); None: the model is
        reached through the ingress only."""
        from infkit.serve.core.runtime import cores_shared
        from infkit.serve.core.service import STAGE_METRICS, Service

        self.name = name
        self.directory = Path(tempfile.mkdtemp(prefix=f"infkit-ray-{name}-"))
        with zipfile.ZipFile(archive) as mar:  # zipfile drops absolute and ../ member paths
            mar.extractall(self.directory)
        replicas = serve.get_replica_context()
        self.replica = getattr(replicas, "replica_tag", None) or str(getattr(replicas, "replica_id", ""))
        self.service = Service(
            self.directory,
            threads=int(threads),
            topk=int(handler.get("topk", 5)),
            max_image_bytes=int(handler.get("max_image_bytes", 10 * 1024 * 1024)),
            explain_steps=int(handler.get("explain_steps", 32)),
            shared_cores=cores_shared(1, int(threads)),
            neuron_layout=str(handler.get("neuron_layout") or "per_worker"),
            spinning=None if handler.get("spinning") is None else bool(handler["spinning"]),
        )
        self.tags = {"model_name": name}
        self.stage_counters = {
            stage: _counter(metric, f"infkit {stage} milliseconds summed over requests")
            for stage, metric in STAGE_METRICS.items()
        }
        self.requests = _counter("InfkitRequests", "requests through the infkit service")
        self.batches = _counter("InfkitBatches", "batches through the infkit service")
        self.queue = _counter("ts_queue_latency_microseconds", "microseconds requests waited for a batch")
        _zero([*self.stage_counters.values(), self.requests, self.batches, self.queue], self.tags)
        http = dict(http or {})
        key_file = http.get("key_file")
        self.key = inference_token(Path(key_file)) if key_file else None
        if key_file and not self.key:
            raise RuntimeError(f"token auth is on but the key file {key_file} holds no inference key")
        self.versions = {name: str(http.get("version") or "1.0")}
        self.max_request_size = int(http.get("max_request_size") or 0)
        self.stubs_dir = http.get("stubs_dir")
        self.served = _counter("ts_inference_requests", "requests answered")
        self.latency = _counter("ts_inference_latency_microseconds", "microseconds from arrival to answer")
        names = [REQUESTS, LATENCY, QUEUE, "InfkitRequests", "InfkitBatches", *STAGE_METRICS.values()]
        self.live = LiveCounts(http.get("counters_dir"), f"{name}-{self.replica}", [name], names)
        self.stage_names = dict(STAGE_METRICS)

    async def __call__(self, request):
        """The model's own route, /predictions/<model>[/<version>] (Serve's proxy sends it here directly); every
        route when this is the only application."""
        return await answer_http(request, self.key, self.versions, self.max_request_size, self._infer)

    async def _infer(self, model: str, item: Any, explain: bool, content_type: str | None, arrived: float):
        try:
            status, answer = await self.predict((item, explain, content_type, arrived))
        except Exception as exc:
            status, answer = _failed(exc)
        took_us = (time.time() - arrived) * 1e6
        self.live.add(model, {REQUESTS: 1, LATENCY: took_us})
        self.served.inc(1, tags=self.tags)
        _add(self.latency, took_us, self.tags)
        return status, answer

    def reconfigure(self, config: dict) -> None:
        """user_config of serve_config.yaml: batchSize and maxBatchDelay of model-config.yaml."""
        self.predict.set_max_batch_size(int(config.get("batch_size", 1)))
        self.predict.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.0)))

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def predict(self, requests: list[tuple[Any, bool, str | None, float]]) -> list[tuple[int, Any]]:
        """(item, explain, content type, arrival time) per request -> (HTTP status, JSON body) per request."""
        started = time.time()
        statuses = [200] * len(requests)

        def set_status(code: int, _phrase: str, idx: int) -> None:
            statuses[idx] = code

        timings: dict[str, float] = {}
        bodies = await asyncio.to_thread(
            self.service.handle,
            [r[0] for r in requests],
            [r[1] for r in requests],
            set_status,
            timings,
            [r[2] for r in requests],
        )
        n = len(requests)
        queued_us = sum(max(0.0, started - r[3]) for r in requests) * 1e6
        stage_ms = {stage: timings.get(stage, 0.0) * 1e3 * n for stage in self.stage_counters}
        for stage, counter in self.stage_counters.items():
            _add(counter, stage_ms[stage], self.tags)
        self.requests.inc(n, tags=self.tags)
        self.batches.inc(1, tags=self.tags)
        _add(self.queue, queued_us, self.tags)
        live = {self.stage_names[stage]: ms for stage, ms in stage_ms.items()}
        self.live.add(self.name, {**live, "InfkitRequests": n, "InfkitBatches": 1, QUEUE: queued_us})
        return list(zip(statuses, bodies))

    async def where(self) -> dict:
        """Which node and replica answer (the two-node test reads it through a handle, never over HTTP)."""
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "replica": self.replica}

    def __del__(self):
        shutil.rmtree(getattr(self, "directory", ""), ignore_errors=True)


def _json(body: Any, status: int = 200):
    from starlette.responses import Response

    return Response(json.dumps(body), status_code=status, media_type="application/json")


def _error(status: int, kind: str, message: str):
    return _json({"code": status, "type": kind, "message": message}, status)


@serve.deployment(name="InfkitIngress", ray_actor_options={"num_cpus": 0})
class InfkitIngress(GrpcRoutes):
    """TorchServe's inference API: POST /predictions/<model>[/<version>], /explanations/<model>, GET /ping; the
    Bearer token of the key file; bodies over max_request_size answered 413; gRPC Ping and Predictions. (Each model's
    own application answers /predictions/<model> itself; what reaches the ingress is the rest.)"""

    def __init__(
        self,
        models: dict,
        key_file: str | None,
        max_request_size: int,
        stubs_dir: str | None = None,
        counters_dir: str | None = None,
    ):
        self.key = inference_token(Path(key_file)) if key_file else None
        if key_file and not self.key:
            raise RuntimeError(f"token auth is on but the key file {key_file} holds no inference key")
        self.models = {
            m: serve.get_deployment_handle("InfkitModel", app_name=info["app"]) for m, info in models.items()
        }
        self.versions = {m: str(info.get("version") or "1.0") for m, info in models.items()}
        self.max_request_size = int(max_request_size)
        self.stubs_dir = stubs_dir
        self.served = _counter("ts_inference_requests", "requests answered")
        self.latency = _counter("ts_inference_latency_microseconds", "microseconds from arrival to answer")
        for model in self.models:
            _zero([self.served, self.latency], {"model_name": model})
        replicas = serve.get_replica_context()
        replica = getattr(replicas, "replica_tag", None) or str(getattr(replicas, "replica_id", ""))
        # the same two counts kept current for the metrics port as well (Ray exports about once a second)
        self.live = LiveCounts(counters_dir, f"ingress-{replica}", self.models, [REQUESTS, LATENCY])

    async def __call__(self, request):
        return await answer_http(request, self.key, self.versions, self.max_request_size, self._infer)

    async def _infer(self, model: str, item: Any, explain: bool, content_type: str | None, arrived: float):
        try:
            status, answer = await self.models[model].predict.remote((item, explain, content_type, arrived))
        except Exception as exc:  # the replica died or raised: TorchServe's 503 for a failed prediction
            status, answer = _failed(exc)
        tags = {"model_name": model}
        took_us = (time.time() - arrived) * 1e6
        self.live.add(model, {REQUESTS: 1, LATENCY: took_us})
        self.served.inc(1, tags=tags)
        _add(self.latency, took_us, tags)
        return status, answer


def _too_large(size: int, limit: int):
    return _error(413, "Payload Too Large", f"request body is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB")


# -- application builders (serve_config.yaml's import_path with args) ------------------------------
def model_app(args: dict):
    return InfkitModel.bind(
        args["name"],
        args["archive"],
        int(args.get("threads") or 1),
        dict(args.get("handler") or {}),
        args.get("http"),
    )


def ingress_app(args: dict):
    return InfkitIngress.bind(
        dict(args["models"]),
        args.get("key_file"),
        int(args["max_request_size"]),
        args.get("stubs_dir"),
        args.get("counters_dir"),
    )
