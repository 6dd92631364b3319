"""The network factory: a timm model by name, and the eager weights file that travels beside artifacts.

Training, compilation, benchmarks and serving all build networks here, so serving never imports Lightning."""

from __future__ import annotations

import difflib
from pathlib import Path

import timm
import torch
from torch import nn

from infkit.errors import InfkitError


def create_network(
    model_name: str, num_classes: int, in_chans: int = 3, pretrained: bool = False, exportable: bool = False
) -> nn.Module:
    """timm.create_model with a clear error for an unknown name. `exportable=True` asks timm for layers that
    trace and export (used for every network that is compiled or served); the weights are the same."""
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=5, cutoff=0.6)
        hint = f" (close: {', '.join(close)})" if close else ""
        raise InfkitError(f"unknown timm model {model_name!r}{hint}; see timm.list_models()")
    return timm.create_model(
        model_name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, exportable=exportable
    )


def save_eager(net: nn.Module, model_name: str, num_classes: int, in_chans: int, path: Path) -> Path:
    """The plain network weights with what rebuilds it: the `.eager.pt` that travels beside artifacts."""
    torch.save(
        {
            "model_name": model_name,
            "num_classes": int(num_classes),
            "in_chans": int(in_chans),
            "state_dict": net.state_dict(),
        },
        path,
    )
    return Path(path)


def load_eager(path: Path) -> nn.Module:
    """A network written by save_eager, in eval mode."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    net = create_network(saved["model_name"], saved["num_classes"], saved["in_chans"], exportable=True)
    net.load_state_dict(saved["state_dict"])
    return net.eval()
