"""The packaged model at serving time: manifest-driven loading, batching with padding, top-k."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from infkit.compile import manifest as mf
from infkit.compile.batching import run_bucketed
from infkit.compile.registry import get_backend
from infkit.data.transforms import eval_transform, to_mode
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
    _norm: tuple[torch.Tensor, torch.Tensor] | None = None

    def __post_init__(self) -> None:
        self._labels = list(self.manifest["labels"])

    @classmethod
    def load(
        cls,
        directory: str | Path,
        threads: int | None = None,
        shared_cores: bool = True,
        neuron_layout: str = "per_worker",
        spinning: bool | None = None,
    ) -> ServedModel:
        """Load a packaged model. ONNX Runtime backends spin their threads only where compile measured it faster and
        the worker's cores are its own, unless `spinning` (handler option) says on or off. Neuron artifacts: the
        worker's NeuronCore budget is set before the SDK is imported (neuron_cores.set_core_budget); with
        neuron_layout=data_parallel one artifact runs over every visible core. neuron_native artifacts run on the
        `neuron` device, one compiled shape per manifest batch size, from the NEFF cache packed in the artifact.
        Tensors stay on the CPU: a Neuron artifact moves its own data to the device."""
        directory = Path(directory)
        manifest = mf.read(directory)
        mf.verify_artifacts(directory, manifest)
        backend = get_backend(manifest["backend"])
        extra = {}
        entries = manifest["artifacts"]
        if neuron_cores.is_neuron(manifest):
            neuron_cores.set_core_budget(manifest, neuron_layout)  # before unavailable_reason() imports the SDK
            extra = {"options": manifest.get("backend_options") or {}}
            if hasattr(backend, "prepare_load"):  # neuron_native: its NEFF cache unpacked and named, also before
                backend.prepare_load(directory / entries[0]["file"], extra["options"])
            else:
                extra["data_parallel"] = neuron_layout == "data_parallel"
        reason = backend.unavailable_reason()
        if reason:
            raise InfkitError(f"this server cannot run the packaged {manifest['backend']} artifact: {reason}")
        # ONNX Runtime backends record whether spinning measured faster; it is used only on cores of one's own
        measured = (manifest.get("backend_options") or {}).get("allow_spinning")
        if measured is not None:
            extra["spinning"] = bool(measured) and not shared_cores if spinning is None else bool(spinning)
        elif spinning is not None:
            log.warning(
                "handler option spinning=%s ignored: %s is not an ONNX Runtime artifact", spinning, manifest["backend"]
            )
        if getattr(backend, "one_artifact_all_sizes", False):
            # neuron_native: one artifact, one compiled shape per batch size in the manifest (padded up to them)
            fn = backend.load(directory / entries[0]["file"], threads=threads, **extra)
            runners = {int(bs): fn for bs in manifest.get("batch_sizes") or [1]}
        elif extra.get("data_parallel"):
            # DataParallel batches dynamically: one artifact (the smallest compiled batch) serves any batch size
            entries = [min(entries, key=lambda e: e["batch_size"] or 0)]
            runners = {None: backend.load(directory / entries[0]["file"], threads=threads, **extra)}
        else:
            runners = {e["batch_size"]: backend.load(directory / e["file"], threads=threads, **extra) for e in entries}
        if getattr(backend, "own_thread_pool", False):
            # torch only normalises the batch here; with more than one thread its OpenMP workers stay busy-waiting
            # after that for milliseconds, on the cores ONNX Runtime's threads then need (measured: resnet18 at
            # 224, 2 threads, batch 1: 22 ms per call after a 2-thread preprocess, 18 ms after a 1-thread one)
            torch.set_num_threads(1)
        elif threads:
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
        """PIL image -> normalised (C,H,W) tensor, one at a time (training's eval transform)."""
        return eval_transform(self.manifest["input_size"], self.manifest["mean"], self.manifest["std"])

    def to_array(self, image: Image.Image) -> np.ndarray:
        """PIL image -> uint8 (H,W) or (H,W,C) array at the model's input size: the per-item part of the eval
        transform (mode conversion, bilinear resize only when the size differs). The float work is batched."""
        channels, height, width = (int(v) for v in self.manifest["input_size"])
        image = to_mode(image, channels)
        if image.size != (width, height):
            image = image.resize((width, height), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)

    def batch(self, arrays: list[np.ndarray]) -> torch.Tensor:
        """uint8 arrays -> one normalised (N,C,H,W) float batch: what ToTensor + Normalize give image by image,
        in three tensor operations on the whole batch."""
        if self._norm is None:
            channels = int(self.manifest["input_size"][0])
            mean = torch.tensor(self.manifest["mean"][:channels], dtype=torch.float32).view(1, -1, 1, 1)
            std = torch.tensor(self.manifest["std"][:channels], dtype=torch.float32).view(1, -1, 1, 1)
            self._norm = (1.0 / (255.0 * std), mean / std)
        scale, shift = self._norm
        x = torch.from_numpy(np.stack(arrays))
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        return x.float().mul_(scale).sub_(shift).contiguous()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a (N,C,H,W) batch: one call for dynamic artifacts; static ones padded up to the
        nearest compiled batch size (chunks of the largest when N exceeds it), padding dropped."""
        return run_bucketed(self.runners, x)

    def scores(self, logits: torch.Tensor, k: int = 5) -> list[dict[str, float]]:
        """[{label: probability}] in descending order, one dict per row of logits (one softmax, one top-k and one
        conversion to Python numbers for the whole batch)."""
        k = max(1, min(int(k), logits.shape[1]))
        values, indices = torch.softmax(logits, dim=1).topk(k, dim=1)
        labels = self._labels
        return [{labels[i]: v for v, i in zip(vs, ix)} for vs, ix in zip(values.tolist(), indices.tolist())]

    def top_k(self, x: torch.Tensor, k: int = 5) -> list[dict[str, float]]:
        """[{label: probability}] in descending order, one dict per input."""
        return self.scores(self.logits(x), k)
