"""Any folder of class sub-folders (<root>/<class>/<image>), or one with train/ val/ [test/] inside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from infkit.data._checks import readable_dir
from infkit.data.base import ClassificationDataModule
from infkit.errors import InfkitError


class ImageFolderDataModule(ClassificationDataModule):
    name = "image_folder"

    def __init__(self, root: str, val_fraction: float = 0.15, test_fraction: float = 0.15, split_seed: int = 42, **kw):
        super().__init__(**kw)
        self.root = str(root)
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.split_seed = int(split_seed)

    def _load(self):
        from torchvision.datasets import ImageFolder

        hint = "set data.root to a folder of class sub-folders, e.g. data.root=data/flowers"
        root = readable_dir(self.root, "image folder", hint)

        def folder(path: Path) -> ImageFolder:
            try:
                return ImageFolder(str(path))
            except (FileNotFoundError, OSError) as exc:
                raise InfkitError(f"image folder {str(path)!r}: {exc}; {hint}") from None

        def loader(ds, ids):
            return (lambda i: (Image.open(ds.samples[ids[i]][0]), int(ds.samples[ids[i]][1])), len(ids))

        if (root / "train").is_dir() and (root / "val").is_dir():
            train, val = folder(root / "train"), folder(root / "val")
            test = folder(root / "test") if (root / "test").is_dir() else val
            if train.classes != val.classes:
                raise InfkitError(f"{root}/train and {root}/val have different class folders; make them match")
            return (
                list(train.classes),
                loader(train, np.arange(len(train))),
                loader(val, np.arange(len(val))),
                loader(test, np.arange(len(test))),
            )
        ds = folder(root)
        order = np.random.default_rng(self.split_seed).permutation(len(ds))
        n_test = round(len(ds) * self.test_fraction)
        n_val = round(len(ds) * self.val_fraction)
        if len(ds) - n_test - n_val < 1 or n_val < 1:
            raise InfkitError(f"image folder {str(root)!r} has only {len(ds)} images: too few to split; add images")
        test_ids, val_ids, train_ids = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
        return (
            list(ds.classes),
            loader(ds, train_ids),
            loader(ds, val_ids),
            loader(ds, test_ids if n_test else val_ids),
        )
