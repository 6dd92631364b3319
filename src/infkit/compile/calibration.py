"""Calibration for static int8: which settings, which images, and feeding them to ONNX Runtime's calibrator.

The images are real ones from the data module's *training* split: parity is checked on the validation split and
accuracy on the test split, so neither judges a model on the images that set its int8 ranges."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from infkit.errors import InfkitError

METHODS = ("minmax", "entropy", "percentile")
TYPES = ("uint8", "int8")
SPLIT = "train"


@dataclass(frozen=True)
class Settings:
    images: int
    method: str
    percentile: float
    per_channel: bool
    reduce_range: bool
    activation_type: str
    weight_type: str
    batch_size: int

    def record(self) -> dict[str, Any]:
        return {
            f"calibration_{k}" if k in ("images", "method", "batch_size") else k: v
            for k, v in asdict(self).items()
            if k != "percentile" or self.method == "percentile"
        }


def config_name(key: str) -> str:
    return f"compile.{key}"


def _whole(options: Mapping[str, Any], key: str, default: int, name: Callable[[str], str]) -> int:
    raw = options.get(key, default)
    try:
        value = int(raw)
        ok = value >= 1 and float(raw) == value and not isinstance(raw, bool)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InfkitError(f"{name(key)}={raw} is not valid; give a whole number >= 1, e.g. {name(key)}={default}")
    return value


def _choice(
    options: Mapping[str, Any], key: str, default: str, allowed: tuple[str, ...], name: Callable[[str], str]
) -> str:
    raw = options.get(key, default)
    value = str(raw).strip().lower()
    if value not in allowed:
        raise InfkitError(f"{name(key)}={raw} is not one of {', '.join(allowed)}; e.g. {name(key)}={default}")
    return value


def _flag(options: Mapping[str, Any], key: str, default: bool, name: Callable[[str], str]) -> bool:
    raw = options.get(key, default)
    if isinstance(raw, bool):
        return raw
    if str(raw).strip().lower() in ("true", "false"):
        return str(raw).strip().lower() == "true"
    raise InfkitError(f"{name(key)}={raw} is not valid; use true or false")


def settings(options: Mapping[str, Any], name: Callable[[str], str] = config_name) -> Settings:
    """The quantization settings from compile.* options, each checked with a one-line error naming the fix;
    `name` spells an option as the user wrote it (compile.<key>, or a command-line flag)."""
    percentile = options.get("percentile", 99.999)
    try:
        ok = 50.0 < float(percentile) <= 100.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InfkitError(f"{name('percentile')}={percentile} is not valid; give a number in (50, 100], e.g. 99.999")
    return Settings(
        images=_whole(options, "calibration_images", 256, name),
        method=_choice(options, "calibration_method", "minmax", METHODS, name),
        percentile=float(percentile),
        per_channel=_flag(options, "per_channel", True, name),
        reduce_range=_flag(options, "reduce_range", False, name),
        activation_type=_choice(options, "activation_type", "uint8", TYPES, name),
        weight_type=_choice(options, "weight_type", "int8", TYPES, name),
        batch_size=_whole(options, "calibration_batch_size", 8, name),
    )


def images(dataset, count: int, seed: int = 0) -> torch.Tensor:
    """`count` preprocessed images of a split's dataset ((image, label) items), drawn with a fixed seed across the
    whole split (an image folder is ordered by class: its first images would all be of one class)."""
    if len(dataset) == 0:
        raise InfkitError(
            f"the {SPLIT} split is empty: int8 calibration needs real images from it; check the data config"
        )
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count]
    return torch.stack([dataset[int(i)][0] for i in order])


class Reader:
    """onnxruntime.quantization's CalibrationDataReader protocol (get_next / rewind) over a tensor of images."""

    def __init__(self, images: torch.Tensor, input_name: str, batch_size: int):
        self.batches = [b.numpy() for b in images.split(batch_size)]
        self.input_name = input_name
        self._it: Iterator | None = None

    def get_next(self) -> dict | None:
        if self._it is None:
            self._it = iter(self.batches)
        batch = next(self._it, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:
        self._it = None
