"""Real images for the in-process benchmark: training images to calibrate int8, and the test split for accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from infkit.errors import InfkitError


@dataclass
class BenchData:
    """Real images for the run: calibration (onnx_int8) and, with trained weights, the test split."""

    calibration: torch.Tensor | None = None
    test_images: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    #: compile.* options for the backends that calibrate (calibration_images, calibration_method, ...)
    int8_options: dict | None = None


def _flag_name(key: str) -> str:
    return "--" + key.replace("_", "-") if key in ("calibration_images", "calibration_method") else f"--int8 {key}"


def int8_flags(pairs: list[str]) -> dict:
    """--int8 KEY=VALUE ... -> onnx_int8 options (checked by name here, by value in load_data)."""
    from infkit.compile.onnx_int8 import OnnxInt8Backend

    allowed = sorted(k for k in OnnxInt8Backend.option_names if k not in ("calibration_images", "calibration_method"))
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in allowed:
            raise InfkitError(f"--int8 {pair}: give KEY=VALUE with KEY one of {', '.join(allowed)}")
        options[key] = value
    return options


def load_data(
    data_overrides: list[str],
    input_size: list[int],
    mean,
    std,
    num_classes: int,
    int8_options: dict,
    calibrate: bool,
    accuracy_images: int | None,
    out_dir: Path,
) -> BenchData:
    """Real images from the data config (`data_overrides`, Hydra syntax; default: the project's default data) at
    the benchmark's input size: training images to calibrate int8, test images when accuracy is asked for."""
    import hydra
    import numpy as np

    from infkit.compile import calibration
    from infkit.utils.compose import compose_config

    # bad options stop here, in one line naming the flag
    settings = calibration.settings(int8_options, _flag_name) if calibrate else None
    if not calibrate and accuracy_images is None:
        return BenchData()
    c, h, w = input_size
    cfg = compose_config("trace", [*data_overrides, f"data.input_size=[{c},{h},{w}]"], out_dir)
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare()
    dm.set_default_normalization(mean, std)
    data = BenchData(int8_options=int8_options)
    if settings is not None:
        data.calibration = calibration.images(dm.dataset(calibration.SPLIT), settings.images)
    if accuracy_images is not None:
        if dm.num_classes != num_classes:
            raise InfkitError(
                f"the checkpoint has {num_classes} classes, data {dm.name!r} has {dm.num_classes}; pass "
                "--data with the experiment it was trained on, e.g. --data experiment=digits_example"
            )
        test = dm.dataset("test")
        n = min(int(accuracy_images), len(test))
        ids = np.linspace(0, len(test) - 1, n).round().astype(int)
        items = [test[int(i)] for i in ids]
        data.test_images = torch.stack([x for x, _ in items])
        data.test_labels = torch.tensor([y for _, y in items])
    return data
