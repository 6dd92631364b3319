"""The training stage as a plain function: run(cfg) -> TrainResult."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import hydra
import lightning as L
import timm.data
from omegaconf import DictConfig, OmegaConf

from infkit.errors import InfkitError

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    best_ckpt: Path
    metrics_path: Path
    metrics: dict


def _instantiate_all(group: DictConfig | None) -> list:
    if not group:
        return []
    return [hydra.utils.instantiate(c) for c in group.values() if c is not None and "_target_" in c]


def build_datamodule_and_model(cfg: DictConfig):
    """The data module and the classifier, with class count and mean/std resolved between them."""
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare()
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model_cfg.update(num_classes=datamodule.num_classes, labels=list(datamodule.classes),
                     input_size=list(datamodule.input_size))
    model = hydra.utils.instantiate(model_cfg, _convert_="all")
    data_cfg = timm.data.resolve_model_data_config(model.net)
    datamodule.set_default_normalization(data_cfg["mean"], data_cfg["std"])
    model.hparams.mean, model.hparams.std = datamodule.mean, datamodule.std
    return datamodule, model


def run(cfg: DictConfig) -> TrainResult:
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)
    datamodule, model = build_datamodule_and_model(cfg)
    log.info("data %s: %d classes, %d/%d/%d train/val/test images, input %s",
             cfg.data.name, datamodule.num_classes, datamodule.split_length("train"),
             datamodule.split_length("val"), datamodule.split_length("test"), datamodule.input_size)
    log.info("model %s: %.2fM parameters", cfg.model.model_name,
             sum(p.numel() for p in model.parameters()) / 1e6)

    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers = _instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    trainer.fit(model=model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    best = Path(trainer.checkpoint_callback.best_model_path) if trainer.checkpoint_callback else None
    if not best or not best.is_file():
        raise InfkitError("training wrote no checkpoint; keep callbacks.model_checkpoint in the config")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("test"):
        test_out = trainer.test(model=model, datamodule=datamodule, ckpt_path=str(best), verbose=False)
        metrics.update({k: float(v) for k, v in (test_out[0] if test_out else {}).items()})
    metrics.update(best_ckpt=str(best), epochs=int(trainer.current_epoch), model_name=cfg.model.model_name,
                   data=cfg.data.name)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "test_metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return TrainResult(best_ckpt=best, metrics_path=metrics_path, metrics=metrics)
