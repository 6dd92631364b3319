"""The training stage as a plain function: run(cfg) -> TrainResult (on the global-zero process; None elsewhere).

Distributed runs (trainer=ddp, torchrun, SLURM) execute this function once per process. Only global rank 0
speaks: it logs, tests and writes test_metrics.json. The test runs after fitting on a single device of rank 0,
as Lightning recommends, so every test image is evaluated exactly once (a DistributedSampler would pad the
split with repeated images to give each rank the same number of batches).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import hydra
import lightning as L
import timm.data
import torch.distributed as dist
from lightning.pytorch.accelerators import Accelerator, CUDAAccelerator, MPSAccelerator, XLAAccelerator
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from infkit.errors import InfkitError
from infkit.utils.cli import user_error

log = logging.getLogger(__name__)
# before the Trainer exists Lightning knows the rank from the launcher's environment (LOCAL_RANK, RANK, SLURM_PROCID)
info = rank_zero_only(log.info)


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
    model_cfg.update(
        num_classes=datamodule.num_classes, labels=list(datamodule.classes), input_size=list(datamodule.input_size)
    )
    model = hydra.utils.instantiate(model_cfg, _convert_="all")
    data_cfg = timm.data.resolve_model_data_config(model.net)
    datamodule.set_default_normalization(data_cfg["mean"], data_cfg["std"])
    model.hparams.mean, model.hparams.std = datamodule.mean, datamodule.std
    return datamodule, model


def runs_on_cuda(accelerator) -> bool:
    """Whether Lightning runs this trainer.accelerator on CUDA devices (its own order for 'auto' and 'gpu')."""
    if isinstance(accelerator, Accelerator):
        return isinstance(accelerator, CUDAAccelerator)
    name = str(accelerator).lower()
    if name == "cuda":
        return True
    if name == "gpu":
        return not MPSAccelerator.is_available()
    if name == "auto":
        return (
            not XLAAccelerator.is_available() and not MPSAccelerator.is_available() and CUDAAccelerator.is_available()
        )
    return False


def resolve_sync_batchnorm(value, accelerator, on_cuda: bool) -> tuple[bool, str | None]:
    """trainer.sync_batchnorm (auto / true / false / unset) -> (flag for the Trainer, info line to log or None).

    torch's SyncBatchNorm works with CUDA devices only: `auto` turns it on there and off elsewhere;
    an explicit `true` anywhere else is a user error, reported before any process starts.
    """
    if value is None or value is False:
        return False, None
    if value is True:
        if on_cuda:
            return True, None
        raise InfkitError(
            f"trainer.sync_batchnorm=true needs CUDA devices, but trainer.accelerator={accelerator} "
            "does not run on CUDA here; use trainer.sync_batchnorm=auto (on with CUDA, off "
            "elsewhere) or trainer.sync_batchnorm=false"
        )
    if str(value).lower() == "auto":
        if on_cuda:
            return True, "sync_batchnorm on: batch-norm statistics are synced across the CUDA devices"
        return False, (
            f"sync_batchnorm off: batch-norm sync needs CUDA devices, and trainer.accelerator="
            f"{accelerator} runs without them (each process keeps its own batch-norm statistics)"
        )
    raise InfkitError(f"trainer.sync_batchnorm={value!r} is not one of auto, true, false")


def build_trainer(trainer_cfg: DictConfig, **kwargs) -> L.Trainer:
    """The Lightning Trainer from config; a combination Lightning rejects becomes one InfkitError line."""
    try:
        return hydra.utils.instantiate(trainer_cfg, **kwargs)
    except Exception as exc:
        if user_error(exc) is not None:
            raise
        cause = exc
        while cause is not None and not isinstance(cause, (MisconfigurationException, ValueError)):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        reason = " ".join(str(cause).split())
        raise InfkitError(
            f"the trainer config does not work here: {reason} "
            "(check trainer.accelerator, trainer.devices, trainer.strategy, trainer.num_nodes)"
        ) from None


def fit_trainer(cfg: DictConfig, callbacks: list, loggers: list) -> L.Trainer:
    """The Trainer for fitting, with sync_batchnorm resolved for the devices it will use."""
    accelerator = cfg.trainer.get("accelerator", "auto")
    sync, note = resolve_sync_batchnorm(cfg.trainer.get("sync_batchnorm"), accelerator, runs_on_cuda(accelerator))
    if note:
        info(note)
    trainer = build_trainer(cfg.trainer, sync_batchnorm=sync, callbacks=callbacks, logger=loggers or False)
    if sync and not isinstance(trainer.accelerator, CUDAAccelerator):
        raise InfkitError(
            f"sync_batchnorm needs CUDA devices, but trainer.accelerator={accelerator} chose "
            f"{type(trainer.accelerator).__name__}; set trainer.sync_batchnorm=false"
        )
    # a launcher's process count (torchrun, SLURM) that disagrees with devices x num_nodes: say so before fitting
    env = getattr(trainer.strategy, "cluster_environment", None)
    if env is not None:
        try:
            env.validate_settings(num_devices=trainer.num_devices, num_nodes=trainer.num_nodes)
        except ValueError as exc:
            raise InfkitError(
                f"{' '.join(str(exc).split())} (set trainer.devices / trainer.num_nodes to match the launcher)"
            ) from None
    return trainer


def leave_process_group() -> None:
    """Every rank waits for the others, then leaves: the test that follows runs on rank 0 alone."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def single_device_trainer(cfg: DictConfig, fitted: L.Trainer, loggers: list) -> L.Trainer:
    """A one-device Trainer on rank 0's device, otherwise configured as the fit was (precision, limits, ...)."""
    root = fitted.strategy.root_device
    devices = [root.index] if root.type == "cuda" and root.index is not None else 1
    return build_trainer(
        cfg.trainer,
        devices=devices,
        num_nodes=1,
        strategy="auto",
        sync_batchnorm=False,
        callbacks=_instantiate_all(cfg.get("callbacks")),
        logger=loggers or False,
    )


def run(cfg: DictConfig) -> TrainResult | None:
    """Fit, then test the best checkpoint once; returns None on every process but global rank 0."""
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
        info("seed %d", int(cfg.seed))
    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers = _instantiate_all(cfg.get("logger"))
    trainer = fit_trainer(cfg, callbacks, loggers)  # checked before any data is read or process started
    datamodule, model = build_datamodule_and_model(cfg)
    info(
        "data %s: %d classes, %d/%d/%d train/val/test images, input %s",
        cfg.data.name,
        datamodule.num_classes,
        datamodule.split_length("train"),
        datamodule.split_length("val"),
        datamodule.split_length("test"),
        datamodule.input_size,
    )
    info("model %s: %.2fM parameters", cfg.model.model_name, sum(p.numel() for p in model.parameters()) / 1e6)
    trainer.fit(model=model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    # validation metrics are synced across ranks (torchmetrics states, sync_dist losses): every rank holds the same
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best = Path(trainer.checkpoint_callback.best_model_path) if trainer.checkpoint_callback else None
    distributed = trainer.world_size > 1 or (dist.is_available() and dist.is_initialized())
    if distributed:
        leave_process_group()
    if not trainer.is_global_zero:
        return None
    if not best or not best.is_file():
        raise InfkitError("training wrote no checkpoint; keep callbacks.model_checkpoint in the config")
    if cfg.get("test"):
        tester = single_device_trainer(cfg, trainer, loggers) if distributed else trainer
        test_out = tester.test(model=model, datamodule=datamodule, ckpt_path=str(best), verbose=False)
        metrics.update({k: float(v) for k, v in (test_out[0] if test_out else {}).items()})
    metrics.update(
        best_ckpt=str(best),
        epochs=int(trainer.current_epoch),
        model_name=cfg.model.model_name,
        data=cfg.data.name,
        world_size=int(trainer.world_size),
    )
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "test_metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return TrainResult(best_ckpt=best, metrics_path=metrics_path, metrics=metrics)
