"""TorchServe handler for infkit models: adapts TorchServe's (data, context) to infkit.serve.Service.

Package it with src/package.py, or by hand (see README):
    torch-model-archiver --model-name digits_torchscript --version 1.0 --handler handlers/infkit_handler.py \
        --serialized-file <compile dir>/digits_resnet18.torchscript.pt \
        --extra-files <compile dir>/manifest.json,<compile dir>/digits_resnet18.eager.pt \
        --config-file model-config.yaml --export-path model_store
The server's Python must have infkit installed (pip install -e <repo>).

Deliberately not TorchServe's BaseHandler: that one moves models to xm.xla_device() whenever torch_xla imports (as
it does beside torch-neuronx). Here tensors stay on the CPU, as a Neuron artifact expects, and a Neuron worker's
NeuronCore budget is set before the SDK is imported (infkit.serve.core.neuron_cores; TorchServe has no Neuron device).
"""

from infkit.serve.core.runtime import cores_shared, threads_per_worker
from infkit.serve.core.service import STAGE_METRICS, Service

# the client's Content-Type (TorchServe keeps header names as the client spelled them). No X-Infkit-* header is read:
# a client can send any header, so none of them may change what the server does
TYPE_HEADERS = ("Content-Type", "content-type")


class InfkitHandler:
    def __init__(self):
        self.service = None
        self.initialized = False
        self.dimensions = None

    def initialize(self, context):
        model_dir = context.system_properties["model_dir"]
        yaml_config = getattr(context, "model_yaml_config", None) or {}
        options = yaml_config.get("handler") or {}
        workers = int(yaml_config.get("minWorkers") or 1)
        threads = int(options.get("threads") or threads_per_worker(workers))
        # TorchServe may scale up to maxWorkers: count those when deciding whether cores are shared
        shared = cores_shared(max(workers, int(yaml_config.get("maxWorkers") or workers)), threads)
        self.service = Service(
            model_dir,
            threads=threads,
            topk=int(options.get("topk", 5)),
            max_image_bytes=int(options.get("max_image_bytes", 10 * 1024 * 1024)),
            explain_steps=int(options.get("explain_steps", 32)),
            shared_cores=shared,
            neuron_layout=str(options.get("neuron_layout") or "per_worker"),
            spinning=None if options.get("spinning") is None else bool(options["spinning"]),
        )
        self.initialized = True

    def handle(self, data, context):
        n = len(data)
        explain = [context.get_request_header(i, "explain") == "True" for i in range(n)]
        types = [next(filter(None, (context.get_request_header(i, h) for h in TYPE_HEADERS)), None) for i in range(n)]
        timings = {}
        out = self.service.handle(data, explain, context.set_response_status, timings, types)
        metrics = getattr(context, "metrics", None)
        if metrics is not None:
            self.record(metrics, getattr(context, "model_name", None) or "model", timings, len(data))
        return out

    def record(self, metrics, model_name, timings, n):
        """Per-stage times as counters on TorchServe's metrics endpoint (metrics_mode prometheus): milliseconds
        summed over requests (a batch's stage time counts once per request in it), the requests and the batches,
        so a benchmark reads mean milliseconds per request between two scrapes (infkit.bench.promscrape)."""
        if self.dimensions is None:
            from ts.metrics.dimension import Dimension

            self.dimensions = [Dimension("ModelName", model_name), Dimension("Level", "Model")]
        for stage, name in STAGE_METRICS.items():
            metrics.add_metric(name, timings.get(stage, 0.0) * 1e3 * n, "ms", None, list(self.dimensions))
        metrics.add_metric("InfkitRequests", n, "count", None, list(self.dimensions))
        metrics.add_metric("InfkitBatches", 1, "count", None, list(self.dimensions))
