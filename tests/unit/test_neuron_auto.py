"""compile=auto's choice by what is installed and where, against the recording stand-in (tests/recording_neuron_sdk):
the installed packages are the stand-in's package metadata, the instance type a DMI product-name file written here.
Never evidence that anything compiles on an instance: only which backend auto takes and why."""

from __future__ import annotations

import pytest

from infkit.compile import neuron_native, neuron_stack
from infkit.compile.registry import get_backend, resolve
from infkit.errors import InfkitError

XLA, NATIVE = "2.9.0.2.15.83", "2.14.3.0.0"


@pytest.fixture
def on(tmp_path, monkeypatch, neuron_env):
    """on("inf2.xlarge") makes this machine that instance type (None: not EC2)."""
    monkeypatch.setattr(neuron_native, "DEVICE", "cpu")
    for key in ("TORCH_NEURONX_NEFF_CACHE_DIR", "TORCH_NEURONX_DISABLE_FALLBACK_EXECUTION"):
        monkeypatch.delenv(key, raising=False)

    def set_type(itype):
        path = tmp_path / "product_name"
        if itype:
            path.write_text(itype + "\n")
        monkeypatch.setattr(neuron_stack, "DMI_PRODUCT_NAME", path)

    return set_type


def choose(tmp_path):
    backend, choice = resolve("auto", prepare=lambda b: b.prepare_environment({}, tmp_path / "out"))
    return backend.name, choice


def test_trn2_with_torchneuron_and_its_device_takes_the_native_backend(neuron_sdk, on, tmp_path, caplog):
    on("trn2.48xlarge")
    neuron_sdk.use_native(NATIVE, devices=16)
    caplog.set_level("INFO")
    name, choice = choose(tmp_path)
    assert name == "neuron_native"
    assert choice.line() == "compile=auto chose neuron_native: its SDK is installed and imports, on trn2.48xlarge"
    assert choice.line() in caplog.text
    assert choice.record() == {
        "chose": "neuron_native",
        "why": "its SDK is installed and imports, on trn2.48xlarge",
        "skipped": [],
        "instance_type": "trn2.48xlarge",
    }


def test_auto_sets_the_native_variables_before_importing_torchneuron(neuron_sdk, on, tmp_path):
    on("trn3.48xlarge")
    neuron_sdk.use_native(NATIVE)
    choose(tmp_path)
    name, env = neuron_sdk.imports[0]
    assert name == "torch_neuronx" and env["TORCH_NEURONX_NEFF_CACHE_DIR"] == str(tmp_path / "out" / "neff_cache")


def test_never_the_native_backend_on_inf2_even_where_it_is_installed(neuron_sdk, on, tmp_path):
    on("inf2.xlarge")
    neuron_sdk.use_native(NATIVE)
    name, choice = choose(tmp_path)
    assert name == "torchscript"
    assert choice.skipped == [
        "neuron_native (TorchNeuron runs on Trn2/Trn3 only, this is inf2)",
        "neuronx (torch-neuronx 2.14.3.0.0 is the native line)",
        "neuron (torch-neuron runs on Inf1 only, this is inf2)",
    ]
    assert not neuron_sdk.imports  # ruled out by instance and package metadata: no SDK imported


@pytest.mark.parametrize("itype", ["inf2.xlarge", "inf2.48xlarge", "trn1.2xlarge", "trn1n.32xlarge"])
def test_inf2_and_trn1_with_the_xla_line_take_neuronx(neuron_sdk, on, tmp_path, itype):
    on(itype)
    neuron_sdk.distributions["torch-neuronx"] = XLA
    name, choice = choose(tmp_path)
    assert name == "neuronx" and choice.why == f"its SDK is installed and imports, on {itype}"
    assert choice.skipped[0].startswith("neuron_native (TorchNeuron runs on Trn2/Trn3 only")


def test_trn2_with_only_the_xla_line_does_not_take_neuronx(neuron_sdk, on, tmp_path):
    on("trn2.48xlarge")
    neuron_sdk.distributions["torch-neuronx"] = XLA
    name, choice = choose(tmp_path)
    assert name == "torchscript"
    assert "neuronx (XLA inference on trn2 ended in Neuron 2.34 (use TorchNeuron, compile=neuron_native))" in (
        choice.skipped
    )


def test_torchneuron_without_a_device_is_passed_over_with_the_reason(neuron_sdk, on, tmp_path):
    on(None)
    neuron_sdk.use_native(NATIVE, devices=0)
    name, choice = choose(tmp_path)
    assert name == "torchscript"
    assert choice.skipped[0] == (
        "neuron_native (compile=neuron_native: torch-neuronx 2.14.3.0.0 imports but sees no "
        "neuron device (torch.neuron.is_available() is false))"
    )


def test_off_ec2_torchneuron_with_a_device_is_taken_and_the_log_says_the_type_is_unknown(neuron_sdk, on, tmp_path):
    on(None)
    neuron_sdk.use_native(NATIVE)
    name, choice = choose(tmp_path)
    assert name == "neuron_native" and "instance type unknown" in choice.why and choice.instance_type is None


def test_inf1_with_torch_neuron_takes_neuron(neuron_sdk, on, tmp_path):
    on("inf1.xlarge")
    neuron_sdk.distributions["torch-neuron"] = "1.13.1.2.11.13.0"
    name, choice = choose(tmp_path)
    assert name == "neuron" and choice.why == "its SDK is installed and imports, on inf1.xlarge"


def test_nothing_installed_takes_torchscript_without_importing_an_sdk(neuron_sdk, on, tmp_path):
    on("c7i.large")
    name, choice = choose(tmp_path)
    assert name == "torchscript" and not neuron_sdk.imports
    assert choice.skipped[0] == "neuron_native (TorchNeuron runs on Trn2/Trn3 only, this is c7i)"


@pytest.mark.parametrize(
    "text, expected",
    [("inf2.xlarge\n", "inf2.xlarge"), ("trn2.48xlarge", "trn2.48xlarge"), ("Standard PC (Q35 + ICH9, 2009)", None)],
)
def test_instance_type_from_the_dmi_product_name(tmp_path, text, expected):
    (tmp_path / "p").write_text(text)
    assert neuron_stack.instance_type(tmp_path / "p") == expected
    assert neuron_stack.instance_type(tmp_path / "missing") is None


@pytest.mark.parametrize(
    "version, line",
    [("2.9.0.2.15.83", "xla"), ("2.8.0.2.10.16", "xla"), ("2.13.3.0.5", "native"), ("2.14.3.0.0", "native")],
)
def test_torch_neuronx_versions_map_to_their_line(version, line):
    assert neuron_stack.torch_neuronx_line(version) == line


def test_an_explicit_backend_that_cannot_run_here_is_one_line(neuron_sdk, on):
    on("inf2.xlarge")
    with pytest.raises(InfkitError) as err:
        resolve("neuron_native")
    assert "\n" not in str(err.value) and "Trn2 and Trn3 only" in str(err.value)
    assert get_backend("neuron_native").name == "neuron_native"
