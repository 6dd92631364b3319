"""Data modules and preprocessing on real images (digits ship with scikit-learn)."""

import numpy as np
import pytest
import torch
from PIL import Image

from infkit.data.cifar10 import CIFAR10DataModule
from infkit.data.digits import DigitsDataModule
from infkit.data.image_folder import ImageFolderDataModule
from infkit.data.transforms import eval_transform, to_mode
from infkit.errors import InfkitError


def test_digits_split_is_deterministic_and_disjoint():
    a, b = DigitsDataModule(), DigitsDataModule()
    a.prepare(), b.prepare()
    assert a.classes == [str(i) for i in range(10)]
    sizes = [a.split_length(s) for s in ("train", "val", "test")]
    assert sum(sizes) == 1797 and min(sizes) > 200
    for split in ("train", "val", "test"):
        for i in (0, 7, a.split_length(split) - 1):
            ia, la = a.raw_item(split, i)
            ib, lb = b.raw_item(split, i)
            assert la == lb and np.array_equal(np.asarray(ia), np.asarray(ib))
    fingerprints = {
        split: {np.asarray(a.raw_item(split, i)[0]).tobytes() for i in range(a.split_length(split))}
        for split in ("train", "val", "test")
    }
    # a handful of digits scans are exact duplicates of each other; splits must not share more than those
    assert len(fingerprints["test"] & fingerprints["train"]) < 5


def test_digits_tensors_have_configured_size():
    dm = DigitsDataModule(input_size=[3, 48, 40])
    dm.set_default_normalization([0.5] * 3, [0.25] * 3)
    x, y = dm.batch("val", 4)
    assert x.shape == (4, 3, 48, 40) and y.shape == (4,)
    assert x.dtype == torch.float32


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA", "I;16", "I", "1", "CMYK"])
def test_any_image_mode_becomes_rgb(mode):
    image = Image.new("RGB", (10, 6), (200, 100, 50)).convert(mode)
    assert to_mode(image, 3).mode == "RGB"
    assert to_mode(image, 1).mode == "L"


def test_16bit_grayscale_is_scaled_not_clipped():
    arr = (np.linspace(0, 65535, 64).reshape(8, 8)).astype(np.uint16)
    out = np.asarray(to_mode(Image.fromarray(arr), 1))
    assert out.min() == 0 and out.max() == 255 and len(np.unique(out)) > 30


def test_rgba_transparent_becomes_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(to_mode(image, 3)).min() == 255


def test_eval_transform_normalises():
    t = eval_transform([3, 8, 8], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    x = t(Image.new("L", (8, 8), 255))
    assert x.shape == (3, 8, 8) and torch.allclose(x, torch.ones_like(x))


def _image_folder(root, per_class=6, classes=("three", "seven", "nine")):
    dm = DigitsDataModule()
    dm.prepare()
    for name, digit in zip(classes, (3, 7, 9)):
        (root / name).mkdir(parents=True)
        found = 0
        for i in range(dm.split_length("train")):
            image, label = dm.raw_item("train", i)
            if label == digit:
                image.save(root / name / f"{found}.png")
                found += 1
                if found == per_class:
                    break
    return root


def test_image_folder_reads_class_subfolders(tmp_path):
    dm = ImageFolderDataModule(root=str(_image_folder(tmp_path / "imgs")), input_size=[3, 32, 32])
    dm.prepare()
    assert dm.classes == ["nine", "seven", "three"]
    assert sum(dm.split_length(s) for s in ("train", "val", "test")) == 18
    dm.set_default_normalization([0.5] * 3, [0.5] * 3)
    x, y = dm.batch("train", 5)
    assert x.shape == (5, 3, 32, 32) and set(y.tolist()) <= {0, 1, 2}


def test_image_folder_missing_root_says_fix(tmp_path):
    with pytest.raises(InfkitError, match="does not exist.*data.root"):
        ImageFolderDataModule(root=str(tmp_path / "nope")).prepare()


def test_cifar10_missing_root_says_fix(tmp_path):
    with pytest.raises(InfkitError, match="does not exist.*download=true"):
        CIFAR10DataModule(root=str(tmp_path / "cifar")).prepare()


def test_cifar10_empty_root_says_fix(tmp_path):
    with pytest.raises(InfkitError, match="CIFAR-10 not readable"):
        CIFAR10DataModule(root=str(tmp_path)).prepare()
