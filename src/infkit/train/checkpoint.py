"""Read a Lightning checkpoint written by src/train.py back into a plain timm network (built for export)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from infkit.errors import InfkitError
from infkit.model import create_network


@dataclass
class LoadedCheckpoint:
    net: torch.nn.Module
    hparams: dict
    path: Path


def load(
    path: str | Path | None,
    expect_model: str | None = None,
    expect_classes: int | None = None,
    expect_input_size: list[int] | None = None,
) -> LoadedCheckpoint:
    """The network in eval mode, checked against what the config expects."""
    if path in (None, "", "null", "None"):
        raise InfkitError("ckpt_path is not set; pass ckpt_path=<the .ckpt printed by src/train.py>")
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise InfkitError(f"ckpt_path {str(p)!r} does not exist; pass the .ckpt printed by src/train.py")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load on an arbitrary file can raise almost anything
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InfkitError(f"ckpt_path {str(p)!r} is not a readable checkpoint ({first[:160]})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise InfkitError(f"ckpt_path {str(p)!r} is not a Lightning checkpoint written by src/train.py")
    hp = dict(ckpt["hyper_parameters"])
    model_name, num_classes = hp.get("model_name"), hp.get("num_classes")
    trained = f"a {model_name} with {num_classes} classes"
    if expect_model is not None and model_name != expect_model:
        raise InfkitError(
            f"checkpoint {p.name} holds {trained}, the config asks for model {expect_model!r}; "
            f"pass the experiment it was trained with, or model.model_name={model_name}"
        )
    if expect_classes is not None and num_classes != expect_classes:
        raise InfkitError(
            f"checkpoint {p.name} holds {trained}, the data config has {expect_classes} classes; "
            "pass the experiment (data) it was trained with"
        )
    if expect_input_size is not None and hp.get("input_size") and list(hp["input_size"]) != list(expect_input_size):
        raise InfkitError(
            f"checkpoint {p.name} was trained on inputs {hp['input_size']}, the config says "
            f"{list(expect_input_size)}; pass data.input_size={hp['input_size']}"
        )
    net = create_network(model_name, num_classes, int(hp.get("in_chans", 3)), exportable=True)
    state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InfkitError(
            f"checkpoint {p.name} does not fit {model_name} with {num_classes} classes ({str(exc).splitlines()[0]})"
        ) from None
    return LoadedCheckpoint(net=net.eval(), hparams=hp, path=p)
