"""Every entry config composes with every experiment and data option, and what they name instantiates: the data
module, the classifier with its optimizer and scheduler, and the Trainer."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from infkit.resources import config_dir
from infkit.utils.compose import compose_config

CONFIG_DIR = config_dir()
EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
DATA = sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml"))
BACKENDS = sorted(p.stem for p in (CONFIG_DIR / "compile").glob("*.yaml"))


def test_expected_groups_exist():
    assert {"digits_example", "cifar10_example"} <= set(EXPERIMENTS)
    assert set(BACKENDS) == {"auto", "neuron", "neuronx", "neuron_native", "torchscript", "onnx", "onnx_int8", "export"}
    for group, names in {
        "trainer": {"default", "cpu", "gpu", "hpu", "ddp"},
        "data": {"digits", "cifar10", "image_folder"},
        "callbacks": {"model_checkpoint", "early_stopping", "rich_progress_bar"},
        "logger": {"csv", "tensorboard"},
    }.items():
        assert names <= {p.stem for p in (CONFIG_DIR / group).glob("*.yaml")}, group


def instantiate_all(cfg, tmp_path):
    """The objects a training run builds from cfg, without reading any data."""
    datamodule = instantiate(cfg.data)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model = instantiate(model_cfg, num_classes=3, _convert_="all")
    trainer = instantiate(
        cfg.trainer,
        accelerator="cpu",
        devices=1,
        strategy="auto",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        sync_batchnorm=False,
    )
    return datamodule, model, trainer


@pytest.mark.parametrize("experiment", [None, *EXPERIMENTS])
def test_experiment_instantiates_data_model_and_trainer(experiment, tmp_path):
    overrides = [f"experiment={experiment}"] if experiment else []
    cfg = compose_config("train", overrides, tmp_path)
    datamodule, model, trainer = instantiate_all(cfg, tmp_path)
    assert datamodule.input_size == list(cfg.data.input_size) and len(datamodule.input_size) == 3
    assert model.hparams.model_name == cfg.model.model_name
    optim = model.configure_optimizers()
    opt = optim["optimizer"] if isinstance(optim, dict) else optim
    assert opt.param_groups[0]["lr"] == cfg.model.optimizer.lr
    assert trainer.max_epochs == cfg.trainer.max_epochs
    assert compose_config("trace", overrides, tmp_path).data == cfg.data


@pytest.mark.parametrize("data", DATA)
def test_data_option_instantiates(data, tmp_path):
    needs_root = "root" in OmegaConf.load(CONFIG_DIR / "data" / f"{data}.yaml").keys()
    cfg = compose_config("train", [f"data={data}", *([f"data.root={tmp_path}"] if needs_root else [])], tmp_path)
    datamodule, model, _ = instantiate_all(cfg, tmp_path)
    assert cfg.data.name == data and type(datamodule).name == data
    assert model.hparams.in_chans == cfg.data.input_size[0]


def test_the_optimizer_and_scheduler_are_config(tmp_path):
    cfg = compose_config(
        "train",
        [
            "experiment=digits_example",
            "model.optimizer._target_=torch.optim.SGD",
            "+model.optimizer.momentum=0.9",
            "model.scheduler=null",
        ],
        tmp_path,
    )
    _, model, _ = instantiate_all(cfg, tmp_path)
    opt = model.configure_optimizers()
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9


def test_cifar10_example_matches_the_original_project(tmp_path):
    cfg = compose_config("train", ["experiment=cifar10_example"], tmp_path)
    assert cfg.model.model_name == "resnet18"
    assert list(cfg.data.input_size) == [3, 224, 224]
    assert cfg.data.name == "cifar10"


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_configs_compose(backend, tmp_path):
    cfg = compose_config("trace", ["experiment=digits_example", f"compile={backend}"], tmp_path)
    assert cfg.compile.backend == backend
    assert cfg.compile.batch_sizes


@pytest.mark.parametrize("trainer", ["default", "cpu", "gpu", "hpu", "ddp"])
def test_trainer_configs_compose(trainer, tmp_path):
    cfg = compose_config("train", ["experiment=digits_example", f"trainer={trainer}"], tmp_path)
    assert cfg.trainer._target_ == "lightning.pytorch.trainer.Trainer"


def test_callbacks_and_loggers_instantiate(tmp_path):
    cfg = compose_config("train", ["experiment=digits_example", "logger=many"], tmp_path)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    assert {type(c).__name__ for c in callbacks} == {"ModelCheckpoint", "EarlyStopping", "RichProgressBar"}
    assert {type(lg).__name__ for lg in loggers} == {"CSVLogger", "TensorBoardLogger"}
    assert Path(cfg.callbacks.model_checkpoint.dirpath).parent == tmp_path


def test_any_timm_model_name_is_accepted(tmp_path):
    cfg = compose_config("train", ["experiment=digits_example", "model.model_name=mobilenetv3_small_050"], tmp_path)
    model = instantiate(cfg.model, num_classes=10)
    assert model.hparams.model_name == "mobilenetv3_small_050"
