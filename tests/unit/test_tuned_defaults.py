"""The defaults `infkit tune` chose live in two files: configs/serve/default.yaml's model: section (what src/package.py
packs) and handlers/model-config.yaml (for a hand-made .mar). Every key they share holds the same value."""

from __future__ import annotations

import yaml
from omegaconf import OmegaConf

from infkit.resources import model_config_file
from infkit.utils.compose import compose_config


def flat(mapping: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_every_shared_key_agrees(tmp_path):
    packaged = flat(OmegaConf.to_container(compose_config("package", [], tmp_path).serve.model, resolve=True))
    hand_made = flat(yaml.safe_load(model_config_file().read_text()))
    shared = sorted(set(packaged) & set(hand_made))
    assert {"minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "handler.threads"} <= set(shared)
    differ = {k: (packaged[k], hand_made[k]) for k in shared if packaged[k] != hand_made[k]}
    assert differ == {}, f"configs/serve/default.yaml vs handlers/model-config.yaml: {differ}"
    # a worker count TorchServe may scale to is the one it starts with: tune measured fixed workers
    assert packaged["minWorkers"] == packaged["maxWorkers"]
