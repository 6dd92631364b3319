"""Every entry config composes with every experiment, and the groups the issue names exist."""

from pathlib import Path

import pytest
from hydra.utils import instantiate

from infkit.resources import config_dir

CONFIG_DIR = config_dir()
from infkit.utils.compose import compose_config

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
BACKENDS = sorted(p.stem for p in (CONFIG_DIR / "compile").glob("*.yaml"))


def test_expected_groups_exist():
    assert {"digits_example", "cifar10_example"} <= set(EXPERIMENTS)
    assert set(BACKENDS) == {"auto", "neuron", "neuronx", "torchscript", "onnx", "onnx_int8", "export"}
    for group, names in {"trainer": {"default", "cpu", "gpu", "hpu", "ddp"},
                         "data": {"digits", "cifar10", "image_folder"},
                         "callbacks": {"model_checkpoint", "early_stopping", "rich_progress_bar"},
                         "logger": {"csv", "tensorboard"}}.items():
        assert names <= {p.stem for p in (CONFIG_DIR / group).glob("*.yaml")}, group


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("entry", ["train", "trace"])
def test_experiment_composes(entry, experiment, tmp_path):
    cfg = compose_config(entry, [f"experiment={experiment}"], tmp_path)
    assert cfg.model.model_name
    assert cfg.data._target_.startswith("infkit.data.")
    assert len(cfg.data.input_size) == 3


def test_cifar10_example_matches_the_seed(tmp_path):
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
