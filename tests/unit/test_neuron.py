"""The Neuron backends without the SDK: argument building, the pipeline-core rule, the error path."""

import pytest

from infkit.compile import neuron
from infkit.compile.registry import BACKENDS, get_backend, resolve_backend
from infkit.errors import InfkitError
from tests.helpers.run_if import run_if


@pytest.mark.parametrize(
    "params, cores",
    [
        (3_165_826, 0),  # the original project's simple CNN: no pipelining
        (9_999_999, 0),  # 0.49...: rounds down
        (10_000_000, 4),  # 0.5: rounds half up
        (11_181_642, 4),  # resnet18
        (25_557_032, 4),  # resnet50 (1.28)
        (30_000_000, 8),  # 1.5: half up
        (108_311_810, 20),  # BERT-base (5.4)
    ],
)
def test_pipeline_core_rule(params, cores):
    assert neuron.pipeline_cores_for(params) == cores


def test_auto_pipeline_cores_in_compiler_args():
    assert neuron.compiler_args_for({"pipeline_cores": "auto"}, 25_557_032) == ["--neuroncore-pipeline-cores", "4"]


def test_pipeline_cores_omitted_when_rule_gives_zero():
    assert neuron.compiler_args_for({"pipeline_cores": "auto"}, 3_165_826) == []


def test_explicit_and_disabled_pipeline_cores():
    assert neuron.compiler_args_for({"pipeline_cores": 16}, 1) == ["--neuroncore-pipeline-cores", "16"]
    assert neuron.compiler_args_for({"pipeline_cores": None}, 10**9) == []


@pytest.mark.parametrize("bad", ["many", -4, 2.5j])
def test_bad_pipeline_cores_names_the_value(bad):
    with pytest.raises(InfkitError, match="pipeline_cores"):
        neuron.compiler_args_for({"pipeline_cores": bad}, 1)


def test_fast_math_and_extra_args_in_order():
    options = {
        "pipeline_cores": "auto",
        "fast_math": "fp32-cast-matmult no-fast-relayout",
        "compiler_args": ["--verbose", 35],
    }
    args = neuron.compiler_args_for(options, 30_000_000)
    assert args == [
        "--neuroncore-pipeline-cores",
        "8",
        "--fast-math",
        "fp32-cast-matmult",
        "no-fast-relayout",
        "--verbose",
        "35",
    ]


def test_trace_kwargs_carry_dynamic_batch_size():
    kw = neuron.trace_kwargs({"pipeline_cores": None, "dynamic_batch_size": True}, 1)
    assert kw == {"compiler_args": [], "dynamic_batch_size": True, "fallback": True, "separate_weights": False}


def test_registry_names_match_config_names():
    assert set(BACKENDS) == {"neuron", "neuronx", "neuron_native", "torchscript", "onnx", "onnx_int8", "export"}
    for name in BACKENDS:
        backend = get_backend(name)
        assert backend.name == name
        assert backend.suffix.endswith((".pt", ".pt2", ".onnx", ".tar"))
    assert get_backend("neuron").suffix == ".neuron.traced.pt"
    assert get_backend("neuron").static_batch and get_backend("neuronx").static_batch


def test_unknown_backend_names_the_choices():
    with pytest.raises(InfkitError, match="unknown backend 'tensorrt'.*torchscript"):
        get_backend("tensorrt")


@run_if(neuron_sdk=False)
def test_missing_torch_neuron_is_one_line_with_the_way_out():
    with pytest.raises(InfkitError) as err:
        resolve_backend("neuron")
    msg = str(err.value)
    assert "\n" not in msg
    assert "torch-neuron" in msg and "compile=torchscript" in msg


@run_if(neuron_sdk=False)
def test_missing_torch_neuronx_is_one_line_with_the_way_out():
    with pytest.raises(InfkitError) as err:
        resolve_backend("neuronx")
    assert "torch-neuronx" in str(err.value) and "compile=torchscript" in str(err.value)


@run_if(neuron_sdk=False)
def test_auto_falls_back_to_torchscript_and_says_why(caplog, monkeypatch, tmp_path):
    from infkit.compile import neuron_stack

    monkeypatch.setattr(neuron_stack, "DMI_PRODUCT_NAME", tmp_path / "not-ec2")  # instance type unknown
    caplog.set_level("INFO")
    assert resolve_backend("auto").name == "torchscript"
    assert (
        "compile=auto chose torchscript: no Neuron SDK usable here; runs on any CPU; passed over: "
        "neuron_native (torch-neuronx not installed); neuronx (torch-neuronx not installed); "
        "neuron (torch-neuron not installed)"
    ) in caplog.text
