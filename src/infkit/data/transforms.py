"""Image preprocessing shared by training, compilation checks and the serving handler. torchvision is imported by the
transforms that use it only: serving an ONNX artifact uses to_mode alone and runs without torch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image


def to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL image (palette, RGBA, 16-bit, grayscale) to L (1 channel) or RGB (3)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits instead of clipping
        arr = np.asarray(image, dtype=np.float32)
        scale = 255.0 / 65535.0 if arr.size and arr.max() > 255 else 1.0
        image = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8))
    if image.mode in ("P", "PA") or (image.mode == "LA"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        # composite on white: transparent regions are background
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("L" if channels == 1 else "RGB")


def eval_transform(input_size: Sequence[int], mean: Sequence[float], std: Sequence[float]):
    """PIL image -> normalised (C,H,W) float tensor, as the compiled model expects it."""
    from torchvision import transforms as T

    channels, height, width = (int(v) for v in input_size)
    return T.Compose(
        [
            T.Lambda(lambda im: to_mode(im, channels)),
            T.Resize((height, width), interpolation=T.InterpolationMode.BILINEAR, antialias=True),
            T.ToTensor(),
            T.Normalize(list(mean)[:channels], list(std)[:channels]),
        ]
    )


def train_transform(input_size: Sequence[int], mean: Sequence[float], std: Sequence[float]):
    """eval_transform with light geometric augmentation (no flips: digits and text are chiral)."""
    from torchvision import transforms as T

    channels, height, width = (int(v) for v in input_size)
    return T.Compose(
        [
            T.Lambda(lambda im: to_mode(im, channels)),
            T.Resize((height, width), interpolation=T.InterpolationMode.BILINEAR, antialias=True),
            T.RandomAffine(degrees=8, translate=(0.08, 0.08), scale=(0.92, 1.08)),
            T.ToTensor(),
            T.Normalize(list(mean)[:channels], list(std)[:channels]),
        ]
    )
