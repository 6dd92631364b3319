"""Explanations for /explanations: Captum Integrated Gradients on the eager weights shipped beside the compiled
artifact, or, for ONNX Runtime artifacts in a process without torch (docker/Dockerfile.ray-onnx), occlusion on the
served model itself.

Which one (`method`, the Service's explain_method): "auto" takes Integrated Gradients wherever torch and captum
import (so an image with torch answers as it always has) and occlusion for a torch-free artifact where they do not;
"integrated_gradients" and "occlusion" ask for one. Occlusion needs no gradient: the image is covered by a sliding
square of the black baseline, one forward pass per position through ONNX Runtime, and each pixel gets the mean drop
of the target's logit over the squares covering it (positive: the pixel supports the target). Its answers name the
method ("method": "occlusion") and have no convergence_delta; Integrated Gradients' answers are unchanged."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from infkit.compile import manifest as mf
from infkit.errors import InfkitError

METHODS = ("auto", "integrated_gradients", "occlusion")
#: occluded images per forward call (a 224x224 RGB batch of 32 is 19 MB)
OCCLUSION_CHUNK = 32


def torch_and_captum() -> str | None:
    """None when Integrated Gradients can run here, else why not."""
    try:  # torch first: a failed captum import would leave half of captum in sys.modules
        for module in ("torch", "captum.attr"):
            importlib.import_module(module)
    except ImportError as exc:
        return f"Integrated Gradients needs torch and captum, which do not import here ({exc})"
    return None


def make_explainer(model, n_steps: int = 32, method: str = "auto"):
    """The explainer for a loaded infkit.serve.core.runtime.ServedModel (see the module's docstring for `method`)."""
    if method not in METHODS:
        raise InfkitError(f"explain_method={method!r} is not one of {', '.join(METHODS)}")
    if method == "auto":
        method = "integrated_gradients" if not model.torch_free or torch_and_captum() is None else "occlusion"
    if method == "occlusion":
        if not model.torch_free:
            raise InfkitError(
                f"occlusion explanations run on ONNX Runtime artifacts; this one is {model.manifest['backend']}: "
                "use explain_method=integrated_gradients"
            )
        return OcclusionExplainer(model)
    why = torch_and_captum()
    if why:
        raise InfkitError(f"{why}; use explain_method=occlusion (ONNX artifacts) or an image with torch (infkit:cpu)")
    return Explainer(model.directory, model.manifest, n_steps=n_steps)


class Explainer:
    """Captum Integrated Gradients on the eager weights (torch)."""

    method = "integrated_gradients"

    def __init__(self, directory: str | Path, manifest: dict, n_steps: int = 32):
        import torch
        from captum.attr import IntegratedGradients

        from infkit.model import load_eager

        entry = manifest.get("eager_weights")
        if not entry:
            raise InfkitError("this model was packaged without eager weights; compile and package it again")
        path = Path(directory) / entry["file"]
        if mf.sha256(path) != entry["sha256"]:
            raise InfkitError(f"eager weights {entry['file']!r} do not match the manifest's sha256")
        self.net = load_eager(path)
        self.n_steps = int(n_steps)
        # baseline: a black image, in the model's normalised input space
        channels = int(manifest["input_size"][0])
        mean = torch.tensor(manifest["mean"][:channels]).view(-1, 1, 1)
        std = torch.tensor(manifest["std"][:channels]).view(-1, 1, 1)
        self.black = -mean / std
        self.ig = IntegratedGradients(self.net)

    def explain(self, x: Any, targets: list[int | None]) -> list[dict]:
        """Attributions (H,W: summed over channels) for each image's target, or its predicted class."""
        import torch

        if isinstance(x, np.ndarray):  # the batch of a torch-free artifact
            x = torch.from_numpy(x)
        with torch.no_grad():
            predicted = self.net(x).argmax(dim=1).tolist()
        chosen = [p if t is None else t for t, p in zip(targets, predicted)]
        attributions, delta = self.ig.attribute(
            x,
            baselines=self.black.expand_as(x).contiguous(),
            target=chosen,
            n_steps=self.n_steps,
            return_convergence_delta=True,
        )
        return [
            {
                "target": int(t),
                "predicted": int(p),
                "convergence_delta": float(d),
                "attributions": a.sum(dim=0).tolist(),
            }
            for t, p, d, a in zip(chosen, predicted, delta.tolist(), attributions.detach())
        ]


def windows(size: int, window: int, stride: int) -> list[int]:
    """Start offsets of a sliding window along one axis, the last one flush with the edge."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


class OcclusionExplainer:
    """Occlusion on the served artifact (numpy + ONNX Runtime: no torch). The square is an eighth of the image's
    shorter side (at least 1 pixel) and moves by half of it: 15 x 15 forward passes per image at any input size."""

    method = "occlusion"

    def __init__(self, model):
        self.model = model
        channels, height, width = (int(v) for v in model.manifest["input_size"])
        mean = np.asarray(model.manifest["mean"][:channels], dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(model.manifest["std"][:channels], dtype=np.float32).reshape(-1, 1, 1)
        self.black = -mean / std  # the same baseline as Integrated Gradients': a black image, normalised
        self.window = max(1, min(height, width) // 8)
        self.stride = max(1, self.window // 2)
        self.squares = [
            (top, left)
            for top in windows(height, self.window, self.stride)
            for left in windows(width, self.window, self.stride)
        ]
        self.coverage = np.zeros((height, width), dtype=np.float32)
        for top, left in self.squares:
            self.coverage[top : top + self.window, left : left + self.window] += 1.0

    def explain(self, x: np.ndarray, targets: list[int | None]) -> list[dict]:
        """Attributions (H,W) for each image's target, or its predicted class."""
        x = np.asarray(x, dtype=np.float32)
        logits = self.model.logits(x)
        predicted = logits.argmax(axis=1).tolist()
        chosen = [p if t is None else int(t) for t, p in zip(targets, predicted)]
        w = self.window
        out = []
        for image, base, target, pred in zip(x, logits, chosen, predicted):
            drops = np.empty(len(self.squares), dtype=np.float32)
            for start in range(0, len(self.squares), OCCLUSION_CHUNK):
                part = self.squares[start : start + OCCLUSION_CHUNK]
                batch = np.repeat(image[None], len(part), axis=0)
                for j, (top, left) in enumerate(part):
                    batch[j, :, top : top + w, left : left + w] = self.black
                drops[start : start + len(part)] = base[target] - self.model.logits(batch)[:, target]
            grid = np.zeros_like(self.coverage)
            for drop, (top, left) in zip(drops, self.squares):
                grid[top : top + w, left : left + w] += drop
            out.append(
                {
                    "target": int(target),
                    "predicted": int(pred),
                    "method": self.method,
                    "attributions": (grid / self.coverage).tolist(),
                }
            )
        return out
