"""torchvision CIFAR-10 from a local root; downloads only when asked (data.download=true)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from infkit.data._checks import readable_dir
from infkit.data.base import ClassificationDataModule
from infkit.errors import InfkitError


class CIFAR10DataModule(ClassificationDataModule):
    name = "cifar10"

    def __init__(
        self, root: str = "data/cifar10", download: bool = False, val_size: int = 5000, split_seed: int = 42, **kw
    ):
        super().__init__(**kw)
        self.root = str(root)
        self.download = bool(download)
        self.val_size = int(val_size)
        self.split_seed = int(split_seed)

    def _load(self):
        from torchvision.datasets import CIFAR10

        hint = (
            "put the python version of CIFAR-10 (cifar-10-batches-py/) there, point data.root at it, "
            "or add data.download=true on a machine with internet"
        )
        if not self.download:
            readable_dir(self.root, "CIFAR-10 root", hint)
        try:
            train_full = CIFAR10(self.root, train=True, download=self.download)
            test = CIFAR10(self.root, train=False, download=self.download)
        except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted."
            raise InfkitError(f"CIFAR-10 not readable under {self.root!r} ({exc}); {hint}") from None
        rng = np.random.default_rng(self.split_seed)
        order = rng.permutation(len(train_full))
        val_ids, train_ids = order[: self.val_size], order[self.val_size :]

        def split(ds, ids):
            return (lambda i: (Image.fromarray(ds.data[ids[i]]), int(ds.targets[ids[i]])), len(ids))

        return (
            list(train_full.classes),
            split(train_full, train_ids),
            split(train_full, val_ids),
            split(test, np.arange(len(test))),
        )
