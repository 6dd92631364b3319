"""trainer=ddp from config to Trainer: sync_batchnorm resolved per device, clear errors, the one-device tester."""

import logging

import pytest
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

from infkit.errors import InfkitError
from infkit.train.run import build_trainer, fit_trainer, resolve_sync_batchnorm, runs_on_cuda, single_device_trainer
from infkit.utils.compose import compose_config

DDP_CPU = ["experiment=digits_example", "trainer=ddp", "trainer.accelerator=cpu"]


@pytest.mark.parametrize("value", [None, False])
@pytest.mark.parametrize("on_cuda", [True, False])
def test_sync_batchnorm_unset_or_false_stays_off_silently(value, on_cuda):
    assert resolve_sync_batchnorm(value, "cpu", on_cuda) == (False, None)


def test_sync_batchnorm_auto_is_on_with_cuda_and_off_elsewhere_with_one_line():
    on, note = resolve_sync_batchnorm("auto", "gpu", on_cuda=True)
    assert on and note.startswith("sync_batchnorm on")
    off, note = resolve_sync_batchnorm("auto", "cpu", on_cuda=False)
    assert not off and note.startswith("sync_batchnorm off") and "accelerator=cpu" in note and "\n" not in note


def test_sync_batchnorm_true_needs_cuda():
    assert resolve_sync_batchnorm(True, "cuda", on_cuda=True) == (True, None)
    with pytest.raises(InfkitError, match=r"sync_batchnorm=true needs CUDA.*accelerator=cpu.*sync_batchnorm=auto"):
        resolve_sync_batchnorm(True, "cpu", on_cuda=False)


def test_sync_batchnorm_other_values_are_rejected():
    with pytest.raises(InfkitError, match=r"sync_batchnorm='sometimes' is not one of auto, true, false"):
        resolve_sync_batchnorm("sometimes", "cpu", on_cuda=False)


@pytest.mark.parametrize("accelerator", ["cpu", "tpu", "hpu", "mps", CPUAccelerator()])
def test_only_cuda_accelerators_count_as_cuda(accelerator):
    assert runs_on_cuda(accelerator) is False


@pytest.mark.parametrize("accelerator", ["cuda", "CUDA", CUDAAccelerator()])
def test_cuda_accelerators_count_as_cuda(accelerator):
    assert runs_on_cuda(accelerator) is True


def test_ddp_config_builds_a_cpu_ddp_trainer_without_sync_batchnorm(tmp_path, caplog):
    cfg = compose_config("train", DDP_CPU, tmp_path)
    assert cfg.trainer.sync_batchnorm == "auto" and cfg.trainer.strategy == "ddp"
    with caplog.at_level(logging.INFO, logger="infkit"):
        trainer = fit_trainer(cfg, callbacks=[], loggers=[])
    assert isinstance(trainer.strategy, DDPStrategy) and isinstance(trainer.accelerator, CPUAccelerator)
    assert trainer.world_size == 2 and trainer.num_nodes == 1
    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sync_batchnorm")]
    assert len(notes) == 1 and notes[0].startswith("sync_batchnorm off")


def test_num_nodes_is_reachable_from_config(tmp_path):
    cfg = compose_config("train", [*DDP_CPU, "trainer.devices=3", "trainer.num_nodes=2"], tmp_path)
    trainer = fit_trainer(cfg, callbacks=[], loggers=[])
    assert trainer.num_nodes == 2 and trainer.num_devices == 3 and trainer.world_size == 6


def test_lightning_rejections_become_one_line(tmp_path):
    cfg = compose_config("train", [*DDP_CPU, "trainer.devices=0"], tmp_path)
    with pytest.raises(InfkitError, match=r"devices=0.*check trainer\.accelerator, trainer\.devices") as exc:
        build_trainer(cfg.trainer, sync_batchnorm=False)
    assert "\n" not in str(exc.value)


def test_the_tester_is_one_device_configured_like_the_fit(tmp_path):
    cfg = compose_config("train", [*DDP_CPU, "+trainer.limit_test_batches=3", "logger=csv"], tmp_path)
    fitted = fit_trainer(cfg, callbacks=[], loggers=[])
    tester = single_device_trainer(cfg, fitted, loggers=[])
    assert isinstance(tester.strategy, SingleDeviceStrategy) and isinstance(tester.accelerator, CPUAccelerator)
    assert tester.world_size == 1 and tester.num_nodes == 1
    assert tester.limit_test_batches == 3
    assert tester.checkpoint_callback is not None  # the configured callbacks, fresh


def test_a_torchrun_process_count_that_differs_from_the_config_is_one_line(tmp_path, monkeypatch):
    # the environment torchrun gives each of 2 processes on one machine; Lightning detects it from these variables
    for key, value in {
        "TORCHELASTIC_RUN_ID": "infkit-test",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "GROUP_RANK": "0",
        "WORLD_SIZE": "2",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }.items():
        monkeypatch.setenv(key, value)
    cfg = compose_config("train", [*DDP_CPU, "trainer.devices=3"], tmp_path)
    with pytest.raises(InfkitError, match=r"devices=3.*world size \(2\).*trainer\.devices / trainer\.num_nodes"):
        fit_trainer(cfg, callbacks=[], loggers=[])
    cfg = compose_config("train", [*DDP_CPU, "trainer.devices=2"], tmp_path)
    assert fit_trainer(cfg, callbacks=[], loggers=[]).world_size == 2
