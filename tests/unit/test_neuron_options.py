"""Option combinations the Neuron SDK does not support (issue 21, item 5), refused or handled before anything is
traced, and the neuronx trace that dies by a signal (aws-neuron-sdk issue #1265), against the recording stand-in
(tests/recording_neuron_sdk): call shapes and messages, never compilation."""

from __future__ import annotations

import signal

import pytest
import torch
from torch import nn

from infkit.compile import neuron, neuronx_trace
from infkit.compile.neuron import NeuronBackend
from infkit.compile.neuronx import NeuronxBackend
from infkit.errors import InfkitError
from infkit.resources import config_dir

IN_PROCESS = {"trace_in_subprocess": False}


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


def compile_neuronx(tmp_path, net=None, **options):
    path = tmp_path / "m.neuronx.traced.pt"
    return path, NeuronxBackend().compile(net or tiny_net(), torch.randn(1, 3, 8, 8), options, path)


# -- 1. dynamic_batch with separated weights ------------------------------------------------------------------------
def test_dynamic_batch_with_weights_outside_the_neff_is_refused_before_tracing(neuron_sdk, tmp_path):
    with pytest.raises(InfkitError, match=r"dynamic_batch=true with compile.inline_weights_to_neff=false is not "):
        compile_neuronx(tmp_path, dynamic_batch=True, inline_weights_to_neff=False, **IN_PROCESS)
    assert not neuron_sdk.calls


# -- 2. fallback: the partitioner gets the subgraph options; a partitioned model keeps its weights inline ------------
def test_fallback_with_weights_outside_the_neff_is_refused(neuron_sdk, tmp_path):
    with pytest.raises(InfkitError, match="move_trace_to_device is documented for a traced Neuron module only"):
        compile_neuronx(tmp_path, fallback=True, inline_weights_to_neff=False, **IN_PROCESS)
    assert not neuron_sdk.calls_to("torch_neuronx.trace")


def test_a_partitioned_artifact_loads_without_moving_weights(neuron_sdk, tmp_path):
    path, used = compile_neuronx(tmp_path, fallback=True, compiler_args=["--optlevel", "2"], **IN_PROCESS)
    (made,) = neuron_sdk.calls_to("torch_neuronx.PartitionerConfig")
    assert made.kwargs["trace_kwargs"] == {"compiler_args": ["--optlevel", "2"], "inline_weights_to_neff": True}
    NeuronxBackend().load(path, options=used)
    assert not neuron_sdk.calls_to("torch_neuronx.move_trace_to_device")


# -- 3. cpu_backend needs a target ------------------------------------------------------------------------------------
def test_cpu_backend_without_a_target_is_refused_with_the_fix(neuron_sdk, tmp_path):
    with pytest.raises(
        InfkitError, match=r'needs the target in compiler_args .* compile.compiler_args=\["--target","inf2"\]'
    ):
        compile_neuronx(tmp_path, cpu_backend=True, compiler_args=["--optlevel", "2"], **IN_PROCESS)
    assert not neuron_sdk.calls


def test_cpu_backend_with_a_target_traces(neuron_sdk, tmp_path):
    compile_neuronx(tmp_path, cpu_backend=True, compiler_args=["--target=trn1"], **IN_PROCESS)
    (call,) = neuron_sdk.calls_to("torch_neuronx.trace")
    assert call.kwargs["cpu_backend"] is True and call.kwargs["compiler_args"] == ["--target=trn1"]


def test_the_stand_in_rejects_cpu_backend_without_a_target_as_the_sdk_does(neuron_sdk):
    import torch_neuronx

    with pytest.raises(ValueError, match="--target"):
        torch_neuronx.trace(tiny_net(), torch.randn(1, 3, 8, 8), cpu_backend=True)


# -- 4. neuron-cc's --fast-math spelling ------------------------------------------------------------------------------
def test_the_misspelt_fast_math_value_is_refused_naming_the_documented_one(neuron_sdk, tmp_path):
    with pytest.raises(
        InfkitError, match="fp32-cast-matmul is not a neuron-cc --fast-math value; valid: .*fp32-cast-matmult"
    ):
        NeuronBackend().compile(tiny_net(), torch.randn(1, 3, 8, 8), {"fast_math": "fp32-cast-matmul"}, tmp_path / "m")
    assert not neuron_sdk.calls_to("torch.neuron.trace")


@pytest.mark.parametrize(
    "value, args",
    [
        ("fp32-cast-matmult no-fast-relayout", ["--fast-math", "fp32-cast-matmult", "no-fast-relayout"]),
        (["fp32-cast-all-fp16"], ["--fast-math", "fp32-cast-all-fp16"]),
        ("none", ["--fast-math", "none"]),
    ],
)
def test_documented_fast_math_values_reach_neuron_cc(neuron_sdk, tmp_path, value, args):
    NeuronBackend().compile(
        tiny_net(), torch.randn(1, 3, 8, 8), {"fast_math": value, "pipeline_cores": None}, tmp_path / "m"
    )
    assert neuron_sdk.calls_to("torch.neuron.trace")[0].kwargs["compiler_args"] == args


def test_all_and_none_go_alone():
    with pytest.raises(InfkitError, match="'all' and 'none' go alone"):
        neuron.fast_math_values("none no-fast-relayout")


def test_the_stand_in_rejects_a_fast_math_value_neuron_cc_would_reject(neuron_sdk):
    import torch_neuron

    with pytest.raises(ValueError, match=r"invalid --fast-math value\(s\) \['fp32-cast-matmul'\]"):
        torch_neuron.trace(tiny_net(), [torch.randn(1, 3, 8, 8)], compiler_args=["--fast-math", "fp32-cast-matmul"])


def test_the_shipped_neuron_config_spells_the_values_as_neuron_cc_does():
    text = (config_dir() / "compile" / "neuron.yaml").read_text()
    assert "fp32-cast-matmult" in text and "fp32-cast-matmul," not in text and "fp32-cast-matmul " not in text


# -- aws-neuron-sdk issue #1265: a trace that dies by a signal --------------------------------------------------------
@pytest.fixture
def forked(monkeypatch):
    """The child inherits the stand-in (a spawned child would import no SDK)."""
    monkeypatch.setattr(neuronx_trace, "START_METHOD", "fork")


def test_a_trace_killed_by_a_signal_is_one_line_naming_issue_1265_and_the_workaround(neuron_sdk, forked, tmp_path):
    neuron_sdk.trace_signal = signal.SIGSEGV
    (tmp_path / "m.eager.pt").write_bytes(b"eager")  # what the compile stage writes before tracing
    with pytest.raises(InfkitError) as err:
        compile_neuronx(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("compile=neuronx: torch_neuronx.trace died by SIGSEGV at batch size 1")
    assert "aws-neuron-sdk issue #1265" in msg and 'pip install "torch-neuronx==2.8.*"' in msg
    assert (
        f"Kept in {tmp_path}: the eager weights (*.eager.pt) and the trace log (m.neuronx.traced.pt.trace.log)" in msg
    )
    assert (tmp_path / "m.eager.pt").read_bytes() == b"eager" and (tmp_path / "m.neuronx.traced.pt.trace.log").is_file()
    assert not (tmp_path / "m.neuronx.traced.pt").exists()


def test_a_trace_in_the_child_process_writes_a_loadable_artifact(neuron_sdk, forked, tmp_path):
    net = tiny_net()
    path, used = compile_neuronx(tmp_path, net=net, dynamic_batch=True)
    x = torch.randn(3, 3, 8, 8)
    assert torch.allclose(NeuronxBackend().load(path, options=used)(x), net(x), atol=1e-5)
    assert used["dynamic_batch"] is True
    assert not neuron_sdk.calls_to("torch_neuronx.trace")  # traced in the child, not here


def test_an_exception_in_the_child_is_one_line_with_the_log(neuron_sdk, forked, tmp_path):
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom in forward")

    with pytest.raises(
        InfkitError, match=r"trace failed at batch size 1: RuntimeError: boom in forward; log: .*trace\.log"
    ):
        compile_neuronx(tmp_path, net=Broken())
    assert "Traceback" in (tmp_path / "m.neuronx.traced.pt.trace.log").read_text()
