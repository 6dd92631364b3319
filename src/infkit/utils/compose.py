"""Compose the real Hydra configs outside a Hydra app (the demo and the tests use this)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from infkit.resources import config_dir


def compose_config(config_name: str, overrides: list[str], output_dir: Path | str) -> DictConfig:
    """The config `python src/<entry>.py <overrides>` would get, writing into output_dir."""
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg
