"""Compile options: every backend declares its keys, each is reachable from configs/compile/*.yaml, and unknown keys
are refused before anything runs (naming the valid ones)."""

from __future__ import annotations

import pytest
import yaml

from infkit.compile import options as opts
from infkit.compile.registry import AUTO_ORDER, BACKENDS, get_backend
from infkit.errors import InfkitError
from infkit.resources import config_dir

CONFIGS = config_dir() / "compile"


def config(name: str) -> dict:
    options = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    options.pop("backend")
    return options


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_each_backend_declares_exactly_the_keys_of_its_yaml(name):
    keys, declared = set(config(name)), get_backend(name).option_names
    # every declared option is reachable from the YAML, and the YAML holds nothing else but the common keys
    assert declared <= keys <= set(opts.COMMON) | declared


def test_auto_yaml_holds_only_keys_of_the_backends_auto_may_pick():
    assert set(config("auto")) <= opts.valid_names("auto")
    opts.check("auto", config("auto"))
    picked = opts.for_backend(get_backend("torchscript"), config("auto"))
    assert set(picked) == {"batch_sizes", "freeze", "optimize_for_inference"}
    assert set(opts.for_backend(get_backend("neuronx"), config("auto"))) <= get_backend("neuronx").option_names | {
        "batch_sizes"
    }
    assert AUTO_ORDER == ("neuron_native", "neuronx", "neuron", "torchscript")


@pytest.mark.parametrize(
    "requested, key",
    [
        ("neuronx", "fallbak"),
        ("neuron", "inline_weights_to_neff"),
        ("auto", "opset"),
        ("torchscript", "pipeline_cores"),
    ],
)
def test_unknown_option_is_an_error_naming_the_valid_ones(requested, key):
    with pytest.raises(InfkitError) as err:
        opts.check(requested, {**config(requested), key: 1})
    msg = str(err.value)
    assert f"compile option(s) {key} unknown to compile={requested}" in msg
    assert msg.split("valid: ")[1].startswith(VALID[requested])


#: what each message lists, written out (not read from the code under test)
VALID = {
    "neuronx": "analyze, batch_sizes, compiler_args, compiler_workdir, cpu_backend, dynamic_batch, fallback, "
    "inline_weights_to_neff, min_top1_agreement, trace_in_subprocess (a typo?",
    "neuron": "analyze, batch_sizes, compiler_args, compiler_timeout, compiler_workdir, dynamic_batch_size, fallback, "
    "fast_math, min_top1_agreement, minimum_segment_size, optimizations, pipeline_cores, separate_weights, "
    "single_fusion_ratio_threshold (a typo?",
    "auto": "analyze, autocast, batch_sizes, compiler_args, compiler_timeout, compiler_workdir, cpu_backend, "
    "dynamic_batch, dynamic_batch_size, fallback, fast_math, freeze, fullgraph, inline_weights_to_neff, "
    "min_top1_agreement, minimum_segment_size, optimizations, optimize_for_inference, pipeline_cores, "
    "separate_weights, single_fusion_ratio_threshold, trace_in_subprocess (a typo?",
    "torchscript": "batch_sizes, freeze, min_top1_agreement, optimize_for_inference (a typo?",
}


def test_a_backend_without_declared_options_is_named():
    class Undeclared:
        name = "mystery"

    with pytest.raises(InfkitError, match="'mystery' declares no option_names"):
        opts.declared(Undeclared())


def test_the_compile_stage_refuses_an_unknown_key_before_anything_runs(tmp_path):
    from infkit.compile import run as compile_stage
    from infkit.utils.compose import compose_config

    cfg = compose_config(
        "trace",
        ["experiment=digits_example", "compile=neuronx", "+compile.fallbak=true", "ckpt_path=missing.ckpt"],
        tmp_path,
    )
    with pytest.raises(InfkitError, match=r"compile option\(s\) fallbak unknown to compile=neuronx; valid: .*fallback"):
        compile_stage.run(cfg)
