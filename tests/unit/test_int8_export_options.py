"""Options of the int8 and export backends, the accuracy guard and the serving thread rules: fast, no compilation."""

from __future__ import annotations

import pytest
import torch

from infkit.compile import calibration, ort_session, parity
from infkit.compile.registry import BACKENDS, CPU_BACKENDS, get_backend, resolve_backend
from infkit.errors import InfkitError
from infkit.serve.core.runtime import cores_shared
from infkit.utils.compose import compose_config
from infkit.utils.cpu import int8_instructions


def test_default_settings_are_the_fast_pair_on_avx2():
    s = calibration.settings({})
    assert (s.images, s.method, s.per_channel, s.reduce_range) == (256, "minmax", True, False)
    assert (s.activation_type, s.weight_type) == ("uint8", "int8")
    assert "percentile" not in s.record() and s.record()["calibration_method"] == "minmax"
    assert calibration.settings({"calibration_method": "Percentile", "percentile": 99.9}).record()["percentile"] == 99.9


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"calibration_method": "kl"}, r"compile.calibration_method=kl is not one of minmax, entropy, percentile"),
        ({"calibration_images": 0}, r"compile.calibration_images=0 is not valid; give a whole number >= 1"),
        ({"calibration_images": "many"}, r"calibration_images=many is not valid"),
        ({"calibration_images": 2.5}, r"calibration_images=2.5 is not valid"),
        ({"activation_type": "int4"}, r"activation_type=int4 is not one of uint8, int8"),
        ({"per_channel": "maybe"}, r"per_channel=maybe is not valid; use true or false"),
        ({"percentile": 101}, r"percentile=101 is not valid"),
    ],
)
def test_bad_quantization_options_are_one_line(options, message):
    with pytest.raises(InfkitError, match=message) as err:
        get_backend("onnx_int8").calibration_count(options)
    assert "\n" not in str(err.value)


def test_calibration_images_are_drawn_from_the_whole_split():
    split = [(torch.full((3, 2, 2), float(i)), i // 10) for i in range(100)]  # ordered by class, like a folder
    a, b = calibration.images(split, 20), calibration.images(split, 20)
    assert a.shape == (20, 3, 2, 2) and torch.equal(a, b)  # the same images every time
    drawn = {int(x[0, 0, 0]) for x in a}
    assert len(drawn) == 20 and len({i // 10 for i in drawn}) > 3  # not just the first class
    assert len(calibration.images(split, 10_000)) == 100  # capped at the split
    with pytest.raises(InfkitError, match="the train split is empty"):
        calibration.images([], 4)


def test_reader_feeds_batches_and_rewinds():
    reader = calibration.Reader(torch.zeros(10, 3, 4, 4), "input", 4)
    sizes = [len(b["input"]) for b in iter(reader.get_next, None)]
    assert sizes == [4, 4, 2]
    reader.rewind()
    assert reader.get_next()["input"].shape == (4, 3, 4, 4)


def test_spinning_setting_is_checked():
    assert ort_session._setting("auto") is None and ort_session._setting(False) is False
    assert ort_session._setting("true") is True
    with pytest.raises(InfkitError, match=r"compile.allow_spinning=sometimes is not valid; use auto"):
        ort_session._setting("sometimes")


@pytest.mark.parametrize(
    ("workers", "threads", "cores", "shared"),
    [
        (1, 2, 2, True),  # this machine's default: the worker's threads take every core, the frontend shares them
        (1, 1, 2, False),  # one core left for the frontend
        (2, 1, 2, True),
        (2, 3, 8, False),
        (3, 3, 8, True),
    ],
)
def test_cores_shared(workers, threads, cores, shared):
    assert cores_shared(workers, threads, cores) is shared


def test_per_backend_agreement_threshold_and_override(tmp_path):
    def threshold(*overrides):
        return compose_config("trace", ["experiment=digits_example", *overrides], tmp_path).parity.min_top1_agreement

    assert threshold("compile=onnx") == 0.99 and threshold("compile=auto") == 0.99
    assert threshold("compile=onnx_int8") == 0.97
    assert threshold("compile=onnx_int8", "parity.min_top1_agreement=0.5") == 0.5


def test_accuracy_guard_and_its_message():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    images = torch.randn(30, 3, 2, 2)
    with torch.no_grad():
        labels = net(images).argmax(1)  # the eager model is right on every image
    dataset = list(zip(images, labels.tolist()))
    same = parity.split_accuracy(net, {None: net}, dataset, max_drop=0.0)
    assert same["images"] == 30 and same["eager_top1"] == 1 and same["drop"] == 0 and same["passed"]
    assert parity.failure("onnx", {"passed": True}, same, "m.json") is None

    def shifted(x):  # predicts the next class: always wrong
        return net(x).roll(1, dims=1)

    worse = parity.split_accuracy(net, {4: shifted}, dataset, limit=10, max_drop=0.01)
    assert worse["images"] == 10 and worse["compiled_top1"] == 0 and worse["drop"] == 1 and not worse["passed"]
    message = parity.failure("onnx_int8", {"passed": True}, worse, "m.json")
    assert message.startswith("onnx_int8 artifact loses 100.00 points of test accuracy") and "\n" not in message
    assert parity.split_accuracy(net, {None: net}, [])["images"] == 0


def test_export_without_a_compiler_is_one_line(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler++")
    reason = get_backend("export").unavailable_reason()
    assert reason.startswith("compile=export needs a C++ compiler") and "'no-such-compiler++'" in reason
    assert "\n" not in reason
    with pytest.raises(InfkitError, match=r"needs a C\+\+ compiler"):
        resolve_backend("export")


def test_registry_lists_the_cpu_backends():
    assert set(CPU_BACKENDS) <= set(BACKENDS)
    for name in CPU_BACKENDS:
        backend = get_backend(name)
        assert backend.name == name and isinstance(getattr(backend, "option_names", ()), frozenset)
    assert int8_instructions() in ("avx512_vnni", "avx_vnni", "avx512bw", "avx2", "unknown")
