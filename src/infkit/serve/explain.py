"""Captum Integrated Gradients on the eager weights shipped beside the compiled artifact."""

from __future__ import annotations

from pathlib import Path

import torch

from infkit.compile import manifest as mf
from infkit.errors import InfkitError
from infkit.model import load_eager


class Explainer:
    def __init__(self, directory: str | Path, manifest: dict, n_steps: int = 32):
        from captum.attr import IntegratedGradients

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

    def explain(self, x: torch.Tensor, targets: list[int | None]) -> list[dict]:
        """Attributions (H,W: summed over channels) for each image's target, or its predicted class."""
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
