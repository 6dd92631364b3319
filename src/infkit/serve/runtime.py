"""The packaged model at serving time: manifest-driven loading, batching with padding, top-k."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from infkit.compile import manifest as mf
from infkit.compile.batching import run_bucketed
from infkit.compile.registry import get_backend
from infkit.data.transforms import eval_transform
from infkit.errors import InfkitError
from infkit.serve import neuron_cores
from infkit.utils.cpu import usable_cores

log = logging.getLogger(__name__)


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Intra-op threads for one worker so that workers x threads does not exceed the cores."""
    cores = cores or usable_cores()
    return max(1, cores // max(1, int(workers)))


def cores_shared(workers: int, threads: int, cores: int | None = None) -> bool:
    """Whether a worker's threads share cores with other workers or TorchServe's frontend: true unless all
    workers' threads together leave at least one core free (then thread spinning may pay off)."""
    cores = cores or usable_cores()
    return max(1, int(workers)) * max(1, int(threads)) >= cores


@dataclass
class ServedModel:
    manifest: dict
    directory: Path
    #: batch size -> callable; the key None means one callable for any batch size
    runners: dict[int | None, Callable[[torch.Tensor], torch.Tensor]]

    @classmethod
    def load(
        cls,
        directory: str | Path,
        threads: int | None = None,
        shared_cores: bool = True,
        neuron_layout: str = "per_worker",
    ) -> ServedModel:
        """Load a packaged model. ONNX Runtime backends spin their threads only where compile measured it faster and
        the worker's cores are its own. Neuron artifacts: the worker's NeuronCore budget is set before the SDK is
        imported (neuron_cores.set_core_budget); with neuron_layout=data_parallel one artifact runs over every visible
        core. Tensors stay on the CPU: a Neuron artifact moves its own data to the device."""
        directory = Path(directory)
        manifest = mf.read(directory)
        mf.verify_artifacts(directory, manifest)
        backend = get_backend(manifest["backend"])
        extra = {}
        if neuron_cores.is_neuron(manifest):
            neuron_cores.set_core_budget(manifest, neuron_layout)  # before unavailable_reason() imports the SDK
            extra = {
                "options": manifest.get("backend_options") or {},
                "data_parallel": neuron_layout == "data_parallel",
            }
        reason = backend.unavailable_reason()
        if reason:
            raise InfkitError(f"this server cannot run the packaged {manifest['backend']} artifact: {reason}")
        # ONNX Runtime backends record whether spinning measured faster; it is used only on cores of one's own
        measured = (manifest.get("backend_options") or {}).get("allow_spinning")
        if measured is not None:
            extra["spinning"] = bool(measured) and not shared_cores
        entries = manifest["artifacts"]
        if extra.get("data_parallel"):
            # DataParallel batches dynamically: one artifact (the smallest compiled batch) serves any batch size
            entries = [min(entries, key=lambda e: e["batch_size"] or 0)]
            runners = {None: backend.load(directory / entries[0]["file"], threads=threads, **extra)}
        else:
            runners = {e["batch_size"]: backend.load(directory / e["file"], threads=threads, **extra) for e in entries}
        if threads:
            torch.set_num_threads(threads)
        log.info(
            "loaded %s (%s) with %s threads, batch sizes %s%s",
            manifest["name"],
            manifest["backend"],
            threads,
            sorted(k for k in runners if k is not None) or "any",
            f", DataParallel over {entries[0]['file']}" if extra.get("data_parallel") else "",
        )
        return cls(manifest=manifest, directory=directory, runners=runners)

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    def transform(self):
        return eval_transform(self.manifest["input_size"], self.manifest["mean"], self.manifest["std"])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a (N,C,H,W) batch: one call for dynamic artifacts; static ones padded up to the
        nearest compiled batch size (chunks of the largest when N exceeds it), padding dropped."""
        return run_bucketed(self.runners, x)

    def top_k(self, x: torch.Tensor, k: int = 5) -> list[dict[str, float]]:
        """[{label: probability}] in descending order, one dict per input."""
        probs = torch.softmax(self.logits(x), dim=1)
        k = max(1, min(int(k), probs.shape[1]))
        values, indices = probs.topk(k, dim=1)
        labels = self.labels
        return [{labels[i]: float(v) for v, i in zip(vs.tolist(), ix.tolist())} for vs, ix in zip(values, indices)]
