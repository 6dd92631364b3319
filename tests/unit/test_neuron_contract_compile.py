"""API-contract tests of the Neuron compile backends against a recording stand-in of torch_neuron / torch_neuronx.

They prove call shapes, never compilation: the stand-in (tests/recording_neuron_sdk) has the documented signatures,
records how infkit calls them, and returns a plain CPU torch.jit.trace where the SDK returns a compiled artifact.
What they check: trace keywords per config, analyze (into the manifest; early stop), dynamic_batch, the partitioner
for CPU fallback."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from infkit.compile.neuron import NeuronBackend
from infkit.compile.neuronx import NeuronxBackend
from infkit.errors import InfkitError
from infkit.resources import config_dir

CONFIGS = config_dir() / "compile"


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)).eval()


def config(name: str, **overrides) -> dict:
    options = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    options.pop("backend")
    if name == "neuronx":  # the stand-in lives in this process: trace here, not in a child that imports no SDK
        options["trace_in_subprocess"] = False
    return {**options, **overrides}


def compile_with(backend, tmp_path, options, batch=1):
    net, x = tiny_net(), torch.randn(batch, 3, 8, 8)
    path = tmp_path / f"m.bs{batch}{backend.suffix}"
    return net, x, path, backend.compile(net, x, options, path)


# -- torch-neuronx -----------------------------------------------------------------------------------------------
def test_neuronx_default_config_calls_trace_with_the_documented_defaults(neuron_sdk, tmp_path):
    net, x, path, used = compile_with(NeuronxBackend(), tmp_path, config("neuronx"))
    (call,) = neuron_sdk.calls_to("torch_neuronx.trace")
    assert call.args[0] is net and call.args[1] is x  # example passed positionally, as one tensor
    assert call.kwargs == {
        "input_output_aliases": {},
        "compiler_workdir": None,
        "compiler_args": None,
        "partitioner_config": None,
        "inline_weights_to_neff": True,
        "cpu_backend": False,
    }
    assert not neuron_sdk.calls_to("torch_neuronx.analyze") and not neuron_sdk.calls_to("torch_neuronx.dynamic_batch")
    assert used["fallback"] is False and used["dynamic_batch"] is False and used["compiled_batch_size"] == 1
    assert torch.jit.load(str(path))(x).shape == (1, 10)  # saved with torch.jit.save, reloadable


def test_neuronx_every_trace_knob_from_config(neuron_sdk, tmp_path):
    options = config(
        "neuronx",
        compiler_args=["--auto-cast", "matmult", "--target", "inf2"],
        compiler_workdir=str(tmp_path / "work"),
        inline_weights_to_neff=False,
        cpu_backend=True,
    )
    compile_with(NeuronxBackend(), tmp_path, options)
    (call,) = neuron_sdk.calls_to("torch_neuronx.trace")
    assert call.kwargs["compiler_args"] == ["--auto-cast", "matmult", "--target", "inf2"]
    assert call.kwargs["compiler_workdir"] == str(tmp_path / "work")
    assert call.kwargs["inline_weights_to_neff"] is False and call.kwargs["cpu_backend"] is True


def test_neuronx_fallback_passes_the_subgraph_options_through_the_partitioner_config(neuron_sdk, tmp_path):
    options = config(
        "neuronx",
        fallback=True,
        compiler_args=["--target", "inf2"],
        compiler_workdir=str(tmp_path / "work"),
        cpu_backend=True,
    )
    compile_with(NeuronxBackend(), tmp_path, options)
    (made,) = neuron_sdk.calls_to("torch_neuronx.PartitionerConfig")
    # the Neuron subgraphs get the compile options (API reference: PartitionerConfig's trace_kwargs)
    assert made.kwargs["trace_kwargs"] == {
        "compiler_args": ["--target", "inf2"],
        "inline_weights_to_neff": True,
        "compiler_workdir": str(tmp_path / "work"),
        "cpu_backend": True,
    }
    (call,) = neuron_sdk.calls_to("torch_neuronx.trace")
    assert type(call.kwargs["partitioner_config"]).__name__ == "PartitionerConfig"
    assert call.kwargs["compiler_args"] is None and call.kwargs["cpu_backend"] is False  # not twice


def test_neuronx_dynamic_batch_wraps_before_saving_and_again_after_loading(neuron_sdk, tmp_path):
    backend = NeuronxBackend()
    _, _, path, used = compile_with(backend, tmp_path, config("neuronx", dynamic_batch=True), batch=2)
    (traced,) = neuron_sdk.calls_to("torch_neuronx.trace")
    (wrapped,) = neuron_sdk.calls_to("torch_neuronx.dynamic_batch")
    assert neuron_sdk.calls.index(wrapped) > neuron_sdk.calls.index(traced)
    assert used["dynamic_batch"] is True and used["compiled_batch_size"] == 2
    run = NeuronxBackend().load(path, options=used)  # a fresh process: options come from the manifest
    assert len(neuron_sdk.calls_to("torch_neuronx.dynamic_batch")) == 2
    assert run(torch.randn(5, 3, 8, 8)).shape == (5, 10)


def test_neuronx_separated_weights_are_moved_to_the_first_visible_core_at_load(neuron_sdk, tmp_path):
    _, _, path, used = compile_with(NeuronxBackend(), tmp_path, config("neuronx", inline_weights_to_neff=False))
    NeuronxBackend().load(path, options=used)
    (moved,) = neuron_sdk.calls_to("torch_neuronx.move_trace_to_device")
    assert moved.args[1] == 0


def test_neuronx_analyze_goes_into_the_options_recorded_in_the_manifest(neuron_sdk, tmp_path):
    backend = NeuronxBackend()
    net, x, _, used = compile_with(backend, tmp_path, config("neuronx", analyze=True))
    (call,) = neuron_sdk.calls_to("torch_neuronx.analyze")
    assert call.args[0] is net and call.args[1] is x
    assert used["analyze"]["support_percentage"] == 100.0 and used["analyze"]["unsupported_operators"] == []
    assert used["analyze"]["supported_operators"]["aten::relu"] == 17
    backend.compile(net, torch.randn(4, 3, 8, 8), config("neuronx", analyze=True), tmp_path / "bs4.pt")
    assert len(neuron_sdk.calls_to("torch_neuronx.analyze")) == 1  # once per model, not once per batch size


UNSUPPORTED = {
    "support_percentage": "97.50%",
    "supported_operators": {"aten::relu": 3},
    "unsupported_operators": [
        {"kind": "aten::fft_fft", "failureAt": "neuronx-cc", "call": "x.py(6)"},
        {"kind": "aten::nonzero", "failureAt": "Lowering to HLO"},
    ],
}


def test_neuronx_analyze_below_100_percent_stops_before_tracing_with_the_list(neuron_sdk, tmp_path):
    neuron_sdk.analysis = UNSUPPORTED
    with pytest.raises(
        InfkitError,
        match=r"97\.50 %.*aten::fft_fft \(neuronx-cc\), aten::nonzero \(Lowering to HLO\)"
        r".*compile\.fallback=true",
    ):
        compile_with(NeuronxBackend(), tmp_path, config("neuronx", analyze=True))
    assert not neuron_sdk.calls_to("torch_neuronx.trace")


def test_neuronx_analyze_below_100_percent_with_fallback_traces_and_records_the_list(neuron_sdk, tmp_path):
    neuron_sdk.analysis = UNSUPPORTED
    *_, used = compile_with(NeuronxBackend(), tmp_path, config("neuronx", analyze=True, fallback=True))
    assert used["analyze"]["unsupported_operators"] == [
        {"kind": "aten::fft_fft", "failure_at": "neuronx-cc"},
        {"kind": "aten::nonzero", "failure_at": "Lowering to HLO"},
    ]
    assert neuron_sdk.calls_to("torch_neuronx.trace")[0].kwargs["partitioner_config"] is not None


# -- torch-neuron --------------------------------------------------------------------------------------------------
def test_neuron_default_config_passes_only_the_set_knobs(neuron_sdk, tmp_path):
    net, x, path, used = compile_with(NeuronBackend(), tmp_path, config("neuron"))
    (call,) = neuron_sdk.calls_to("torch.neuron.trace")
    assert call.args[0] is net and isinstance(call.args[1], list) and call.args[1][0] is x
    assert call.kwargs == {
        "compiler_args": [],
        "fallback": True,
        "dynamic_batch_size": False,
        "separate_weights": False,
    }
    assert used["pipeline_cores"] == 0  # a tiny model: the rule gives no pipelining
    assert torch.jit.load(str(path))(x).shape == (1, 10)


def test_neuron_every_trace_knob_from_config(neuron_sdk, tmp_path):
    options = config(
        "neuron",
        pipeline_cores=4,
        fast_math="fp32-cast-matmult",
        compiler_args=["--verbose", "35"],
        compiler_timeout=900,
        compiler_workdir=str(tmp_path / "cc"),
        fallback=False,
        optimizations=["FLOAT32_TO_FLOAT16"],
        separate_weights=True,
        dynamic_batch_size=True,
        minimum_segment_size=3,
        single_fusion_ratio_threshold=0.8,
    )
    *_, used = compile_with(NeuronBackend(), tmp_path, options)
    (call,) = neuron_sdk.calls_to("torch.neuron.trace")
    import torch_neuron  # the stand-in, imported by the backend

    assert call.kwargs == {
        "compiler_args": ["--neuroncore-pipeline-cores", "4", "--fast-math", "fp32-cast-matmult", "--verbose", "35"],
        "fallback": False,
        "dynamic_batch_size": True,
        "separate_weights": True,
        "compiler_timeout": 900,
        "compiler_workdir": str(tmp_path / "cc"),
        "minimum_segment_size": 3,
        "single_fusion_ratio_threshold": 0.8,
        "optimizations": [torch_neuron.Optimization.FLOAT32_TO_FLOAT16],
    }
    assert used["optimizations"] == ["FLOAT32_TO_FLOAT16"] and used["pipeline_cores"] == 4  # JSON in the manifest


def test_neuron_unknown_optimization_names_the_valid_ones(neuron_sdk, tmp_path):
    with pytest.raises(InfkitError, match="FLOAT32_TO_BFLOAT16 unknown.*valid: FLOAT32_TO_FLOAT16"):
        compile_with(NeuronBackend(), tmp_path, config("neuron", optimizations=["FLOAT32_TO_BFLOAT16"]))
    assert not neuron_sdk.calls_to("torch.neuron.trace")


@pytest.mark.parametrize(
    "key, bad", [("compiler_timeout", "soon"), ("compiler_timeout", -5), ("single_fusion_ratio_threshold", 0)]
)
def test_neuron_bad_knob_values_name_the_key(neuron_sdk, tmp_path, key, bad):
    with pytest.raises(InfkitError, match=f"compile.{key}="):
        compile_with(NeuronBackend(), tmp_path, config("neuron", **{key: bad}))


def test_neuron_analyze_model_runs_with_the_example_as_a_list(neuron_sdk, tmp_path):
    net, x, _, used = compile_with(NeuronBackend(), tmp_path, config("neuron", analyze=True))
    (call,) = neuron_sdk.calls_to("torch.neuron.analyze_model")
    assert call.args[0] is net and call.kwargs["example_inputs"][0] is x
    # torch-neuron documents no return value: the manifest says the table went to the log
    assert used["analyze"]["support_percentage"] is None and "logged" in used["analyze"]["note"]
    assert neuron_sdk.calls.index(call) < neuron_sdk.calls.index(neuron_sdk.calls_to("torch.neuron.trace")[0])
