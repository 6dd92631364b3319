"""What every infkit data module shares: splits of (PIL image, label) pairs, transforms, labels."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from infkit.data.transforms import eval_transform, train_transform


class ImageListDataset(Dataset):
    """(PIL image or loader index, label) pairs with a transform applied on access."""

    def __init__(self, get_item, length: int, transform):
        self._get_item = get_item
        self._length = length
        self.transform = transform

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, idx: int):
        image, label = self._get_item(idx)
        return self.transform(image), label


class ClassificationDataModule(L.LightningDataModule):
    """Subclasses implement `_load()` returning (classes, train, val, test) where each split is
    a pair (get_item(idx) -> (PIL image, int label), length)."""

    name = "base"

    def __init__(
        self,
        input_size: Sequence[int] = (3, 32, 32),
        batch_size: int = 64,
        num_workers: int = 0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        **_: object,
    ):
        super().__init__()
        self.input_size = [int(v) for v in input_size]
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.mean = list(mean) if mean is not None else None
        self.std = list(std) if std is not None else None
        self._splits = None
        self.classes: list[str] = []

    # -- normalisation -------------------------------------------------------------------------
    def set_default_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Use these mean/std unless the config gave its own (timm's data config of the model)."""
        if self.mean is None:
            self.mean = [float(v) for v in mean]
        if self.std is None:
            self.std = [float(v) for v in std]

    def _norm(self):
        mean = self.mean if self.mean is not None else [0.5] * 3
        std = self.std if self.std is not None else [0.5] * 3
        return mean, std

    # -- data ------------------------------------------------------------------------------------
    def _load(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare(self) -> None:
        """Load the splits once (also gives `classes` before training starts)."""
        if self._splits is None:
            self.classes, *splits = self._load()
            self._splits = dict(zip(("train", "val", "test"), splits))

    @property
    def num_classes(self) -> int:
        self.prepare()
        return len(self.classes)

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def dataset(self, split: str, train: bool = False) -> ImageListDataset:
        self.prepare()
        get_item, length = self._splits[split]
        mean, std = self._norm()
        transform = (train_transform if train else eval_transform)(self.input_size, mean, std)
        return ImageListDataset(get_item, length, transform)

    def raw_item(self, split: str, idx: int) -> tuple[Image.Image, int]:
        self.prepare()
        return self._splits[split][0](idx)

    def split_length(self, split: str) -> int:
        self.prepare()
        return self._splits[split][1]

    def _loader(self, split: str, train: bool) -> DataLoader:
        return DataLoader(
            self.dataset(split, train=train),
            batch_size=self.batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(0) if train else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def batch(self, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n preprocessed images of a split, as one tensor (for parity checks)."""
        ds = self.dataset(split, train=False)
        n = min(n, len(ds))
        items = [ds[i] for i in range(n)]
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])
