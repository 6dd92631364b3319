"""compile=export's speed settings, without a C++ build: the options, and that Inductor is called with autograd off
(with it on, Inductor skips freezing without a word and the artifact runs unfolded batch norms)."""

from __future__ import annotations

import pytest
import torch

from infkit.compile import export
from infkit.compile.registry import get_backend
from infkit.errors import InfkitError
from infkit.utils.compose import compose_config


def test_defaults_freeze_and_do_not_prepack():
    configs = export.inductor_configs({})
    assert configs["freezing"] is True and configs["cpp.weight_prepack"] is False
    assert export.inductor_configs({"weight_prepack": "true", "freezing": "off"})["cpp.weight_prepack"] is True
    assert export.inductor_configs({"freezing": "off"})["freezing"] is False


def test_the_yaml_holds_the_speed_settings(tmp_path):
    cfg = compose_config("trace", ["experiment=digits_example", "compile=export"], tmp_path)
    assert cfg.compile.freezing is True and cfg.compile.weight_prepack is False
    assert {"freezing", "weight_prepack", "max_batch_size"} <= get_backend("export").option_names


@pytest.mark.parametrize("key", ["freezing", "weight_prepack"])
def test_a_bad_flag_is_one_line_naming_value_and_fix(key):
    with pytest.raises(InfkitError, match=rf"compile.{key}='maybe' is not valid; give true or false") as err:
        export.inductor_configs({key: "maybe"})
    assert "\n" not in str(err.value)


def test_inductor_compiles_with_autograd_off_and_the_options_are_recorded(monkeypatch, tmp_path):
    seen = {}

    def fake_compile(program, package_path, inductor_configs):
        seen.update(grad=torch.is_grad_enabled(), configs=inductor_configs, program=program)
        return package_path

    monkeypatch.setattr("torch._inductor.aoti_compile_and_package", fake_compile)
    monkeypatch.setattr(export.ExportBackend, "unavailable_reason", lambda self: None)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    assert torch.is_grad_enabled()
    used = export.ExportBackend().compile(net, torch.randn(1, 3, 8, 8), {}, tmp_path / "m.pt2")
    assert seen["grad"] is False and torch.is_grad_enabled()
    assert seen["configs"]["freezing"] is True and seen["configs"]["cpp.weight_prepack"] is False
    assert (used["freezing"], used["weight_prepack"]) == (True, False)
    assert used["dynamic_batch"] == {"min": 1, "max": 1024}
