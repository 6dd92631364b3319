"""The packaged model at serving time: manifest-driven loading, batching with padding, top-k.

Artifacts whose backend is `torch_free` (ONNX and ONNX-int8, run by ONNX Runtime) are served with numpy alone: the
batch is normalised in numpy, its logits come back as a numpy array, and softmax and top-k are numpy's, so such a
model serves in a process where torch is not installed (docker/Dockerfile.ray-onnx). Every other artifact (eager,
TorchScript, torch.export, Neuron) runs on torch tensors as before; torch is imported for those only."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from infkit.compile import manifest as mf
from infkit.compile.batching import run_bucketed
from infkit.compile.registry import get_backend
from infkit.data.transforms import to_mode
from infkit.errors import InfkitError
from infkit.serve.core import neuron_cores
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
    runners: dict[int | None, Callable[[Any], Any]]
    #: batches are numpy arrays and torch is never imported (ONNX Runtime artifacts); else torch tensors
    torch_free: bool = False
    _norm: tuple[Any, Any] | None = None

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
        try:
            backend = get_backend(manifest["backend"])
        except ImportError as exc:  # torch's backends in an image without torch (docker/Dockerfile.ray-onnx)
            raise InfkitError(
                f"this server cannot run the packaged {manifest['backend']} artifact: it needs {exc.name or 'torch'}, "
                f"which does not import here ({exc}); serve it from an image with torch (infkit:cpu), or compile the "
                "model with compile=onnx or compile=onnx_int8"
            ) from None
        extra = {}
        entries = manifest["artifacts"]
        if neuron_cores.is_neuron(manifest):
            neuron_cores.set_core_budget(manifest, neuron_layout)  # before unavailable_reason() imports the SDK
            extra = {"options": manifest.get("backend_options") or {}}
            if hasattr(backend, "prepare_load"):  # neuron_native: its NEFF cache unpacked and named, also before
                backend.prepare_load(directory / entries[0]["file"], extra["options"])
            else:
                extra["data_parallel"] = neuron_layout == "data_parallel"
        # what loading needs (ONNX artifacts: onnxruntime alone), else what the backend needs at all
        reason = getattr(backend, "load_unavailable_reason", backend.unavailable_reason)()
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
        torch_free = bool(getattr(backend, "torch_free", False))
        # a torch-free artifact never imports torch; where torch is loaded all the same (TorchServe's worker imports
        # it, explanations may run it) it gets one thread, as do artifacts with a thread pool of their own: with more
        # its OpenMP workers stay busy-waiting after any torch work for milliseconds, on the cores the runtime's own
        # threads then need (measured with ONNX Runtime when torch normalised the batch: resnet18 at 224, 2
        # threads, batch 1: 22 ms per call after a 2-thread preprocess, 18 ms after a 1-thread one)
        torch = sys.modules.get("torch") if torch_free else importlib.import_module("torch")
        if torch is not None:
            if getattr(backend, "own_thread_pool", False):
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
        return cls(manifest=manifest, directory=directory, runners=runners, torch_free=torch_free)

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    def transform(self):
        """PIL image -> normalised (C,H,W) tensor, one at a time (training's eval transform; needs torchvision)."""
        from infkit.data.transforms import eval_transform

        return eval_transform(self.manifest["input_size"], self.manifest["mean"], self.manifest["std"])

    def to_array(self, image: Image.Image) -> np.ndarray:
        """PIL image -> uint8 (H,W) or (H,W,C) array at the model's input size: the per-item part of the eval
        transform (mode conversion, bilinear resize only when the size differs). The float work is batched."""
        channels, height, width = (int(v) for v in self.manifest["input_size"])
        image = to_mode(image, channels)
        if image.size != (width, height):
            image = image.resize((width, height), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)

    def _scale_shift(self, torch_module=None) -> tuple[Any, Any]:
        """(1 / (255 std), mean / std) as float32 (1,C,1,1): numpy arrays, or tensors when torch is given."""
        if self._norm is None:
            channels = int(self.manifest["input_size"][0])
            mean = np.asarray(self.manifest["mean"][:channels], dtype=np.float32).reshape(1, -1, 1, 1)
            std = np.asarray(self.manifest["std"][:channels], dtype=np.float32).reshape(1, -1, 1, 1)
            scale, shift = np.float32(1.0) / (np.float32(255.0) * std), mean / std
            if torch_module is not None:
                scale, shift = torch_module.from_numpy(scale), torch_module.from_numpy(shift)
            self._norm = (scale, shift)
        return self._norm

    def batch(self, arrays: list[np.ndarray]) -> Any:
        """uint8 arrays -> one normalised (N,C,H,W) float32 batch: what ToTensor + Normalize give image by image,
        in three operations on the whole batch. A numpy array for torch-free artifacts, else a torch tensor."""
        x = np.stack(arrays)
        if self.torch_free:
            scale, shift = self._scale_shift()
            x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
            out = x.astype(np.float32)
            out *= scale
            out -= shift
            return np.ascontiguousarray(out)
        import torch

        scale, shift = self._scale_shift(torch)
        t = torch.from_numpy(x)
        t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
        return t.float().mul_(scale).sub_(shift).contiguous()

    def logits(self, x: Any) -> Any:
        """Logits for a (N,C,H,W) batch (of the kind batch() makes): one call for dynamic artifacts; static ones
        padded up to the nearest compiled batch size (chunks of the largest when N exceeds it), padding dropped."""
        return run_bucketed(self.runners, x)

    def scores(self, logits: Any, k: int = 5) -> list[dict[str, float]]:
        """[{label: probability}] in descending order, one dict per row of logits (one softmax, one top-k and one
        conversion to Python numbers for the whole batch). numpy logits are scored with numpy, tensors with torch."""
        k = max(1, min(int(k), logits.shape[1]))
        if isinstance(logits, np.ndarray):
            values, indices = softmax_top_k(logits, k)
        else:
            import torch

            values, indices = torch.softmax(logits, dim=1).topk(k, dim=1)
        labels = self._labels
        return [{labels[i]: v for v, i in zip(vs, ix)} for vs, ix in zip(values.tolist(), indices.tolist())]

    def top_k(self, x: Any, k: int = 5) -> list[dict[str, float]]:
        """[{label: probability}] in descending order, one dict per input."""
        return self.scores(self.logits(x), k)


def softmax_top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, class indices) of the k most probable classes of each row, highest first: torch.softmax and
    topk in numpy (float32; the maximum subtracted before exp, as torch does; ties keep the lower index first)."""
    z = logits.astype(np.float32, copy=False)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    indices = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(p, indices, axis=1), indices
