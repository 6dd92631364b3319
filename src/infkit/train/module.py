"""A timm classifier as a LightningModule; the same model name is used in config, files and reports."""

from __future__ import annotations

import functools
from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from infkit.model import create_network


class ImageClassifier(L.LightningModule):
    def __init__(
        self,
        model_name: str = "resnet18",
        num_classes: int = 10,
        in_chans: int = 3,
        pretrained: bool = False,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        labels: list[str] | None = None,
        input_size: list[int] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ):
        super().__init__()
        # everything needed to rebuild the network and its preprocessing travels in the checkpoint; the optimizer
        # and scheduler are config (configs/model/), partial callables that stay out of it
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.optimizer = optimizer or functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=1e-4)
        self.scheduler = scheduler
        self.net = create_network(model_name, num_classes, in_chans, pretrained)
        self.criterion = nn.CrossEntropyLoss()
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch, metric, stage: str):
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y)
        metric(logits.argmax(dim=1), y)
        # under DDP each rank sees part of the data: the epoch loss is averaged over all ranks (sync_dist, weighted
        # by batch size); a torchmetrics metric syncs its own state across ranks when Lightning computes it
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "train", sync_dist=True)
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, self.train_acc, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, self.val_acc, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, self.test_acc, "test")

    def configure_optimizers(self):
        opt = self.optimizer(params=self.parameters())
        if self.scheduler is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler(optimizer=opt), "interval": "epoch"}}
