"""scikit-learn's digits: 1797 real 8x8 grayscale scans, shipped inside scikit-learn (no download)."""

from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from infkit.data.base import ClassificationDataModule

DIGIT_CLASSES = [str(d) for d in range(10)]


def digit_image(pixels: np.ndarray) -> Image.Image:
    """One 8x8 digits sample (values 0..16) as an 8-bit grayscale PIL image (ink is bright)."""
    return Image.fromarray(np.round(pixels * (255.0 / 16.0)).astype(np.uint8))


class DigitsDataModule(ClassificationDataModule):
    name = "digits"

    def __init__(self, val_fraction: float = 0.15, test_fraction: float = 0.15, split_seed: int = 42, **kw):
        super().__init__(**kw)
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.split_seed = int(split_seed)

    def _load(self):
        digits = load_digits()
        images, labels = digits.images, digits.target.astype(int)
        idx = np.arange(len(labels))
        # deterministic, stratified split: same seed, same images in each split
        rest, test = train_test_split(idx, test_size=self.test_fraction, random_state=self.split_seed, stratify=labels)
        val_share = self.val_fraction / (1.0 - self.test_fraction)
        train, val = train_test_split(rest, test_size=val_share, random_state=self.split_seed, stratify=labels[rest])

        def split(ids):
            return (lambda i: (digit_image(images[ids[i]]), int(labels[ids[i]])), len(ids))

        return DIGIT_CLASSES, split(train), split(val), split(test)
