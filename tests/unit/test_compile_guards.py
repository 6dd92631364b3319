"""The parity and accuracy guards: a check that compared nothing fails (never read as a pass), a check turned off
is "not checked", and zero images or an empty split stop compilation before anything compiles, naming the fix."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from infkit.compile import parity
from infkit.errors import InfkitError

DEFAULTS = {"agreement": True, "num_images": 256, "accuracy": True, "accuracy_images": 2000}
SPLITS = {"val": 180, "test": 270}


def plan(splits=SPLITS, **overrides):
    return parity.planned_images(OmegaConf.create({**DEFAULTS, **overrides}), splits)


@pytest.mark.parametrize(
    "report, expected",
    [
        ({}, "failed"),  # no `passed` key: failed, never passed
        ({"split": "test", "images": 0}, "failed"),  # what split_accuracy returned for an empty split
        ({"passed": True, "images": 0}, "failed"),
        ({"passed": False, "images": 40}, "failed"),
        ({"passed": True, "images": 40}, "passed"),
        ({"passed": "yes", "images": 40}, "failed"),  # only True is a pass
        ({"checked": False, "status": "not checked", "reason": "parity.accuracy=false"}, "not checked"),
        (None, "failed"),
    ],
)
def test_status_reads_only_an_explicit_pass_on_real_images_as_passed(report, expected):
    assert parity.status(report) == expected


def test_failure_names_a_check_that_compared_nothing():
    passed = {"checked": True, "passed": True, "images": 40}
    reason = parity.failure("onnx", passed, {"split": "test", "images": 0}, "out/manifest.json")
    assert reason.startswith("the accuracy check of the onnx artifact compared nothing (0 images)")
    assert "parity.accuracy=false" in reason and "\n" not in reason


def test_failure_is_none_when_both_checks_are_turned_off():
    off = parity.not_checked("x=false")
    assert parity.failure("onnx", off, off, "m.json") is None and off["status"] == "not checked"


def test_failure_reports_a_low_agreement_with_its_numbers():
    report = {"checked": True, "images": 8, "passed": False, "top1_agreement": 0.5, "min_top1_agreement": 0.99}
    report["max_abs_logit_diff"] = 2.5
    reason = parity.failure("torchscript", report, parity.not_checked("off"), "m.json")
    assert reason.startswith("torchscript artifact agrees with the eager model on only 50.0 % of top-1 predictions")


def test_the_default_plan_counts_images_and_none_means_the_whole_split():
    assert plan() == (180, 270)
    assert plan(num_images=16, accuracy_images=None) == (16, None)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"accuracy_images": 0}, r"parity.accuracy_images=0: the check would compare nothing.*parity.accuracy=false"),
        ({"num_images": 0}, r"parity.num_images=0: the check would compare nothing.*parity.agreement=false"),
        ({"num_images": -3}, r"parity.num_images=-3 is not valid"),
        ({"accuracy_images": "many"}, r"parity.accuracy_images='many' is not valid"),
    ],
)
def test_zero_or_bad_image_counts_stop_with_the_fix(overrides, message):
    with pytest.raises(InfkitError, match=message):
        plan(**overrides)


@pytest.mark.parametrize("split, switch", [("test", "accuracy"), ("val", "agreement")])
def test_an_empty_split_stops_with_the_fix(split, switch):
    with pytest.raises(
        InfkitError,
        match=rf"the {'validation' if split == 'val' else 'test'} split is empty.*"
        rf"parity.{switch}=false",
    ):
        plan({**SPLITS, split: 0})


def test_turned_off_checks_need_no_images():
    assert plan({"val": 0, "test": 0}, agreement=False, accuracy=False) == (0, 0)
    assert plan({"val": 5, "test": 0}, accuracy=False, accuracy_images=0) == (5, 0)


def test_split_accuracy_of_an_empty_dataset_is_failed_not_passed():
    net = nn.Linear(2, 2)
    report = parity.split_accuracy(net, {None: net}, [], None, 0.01)
    assert parity.status(report) == "failed" and "passed" not in report


def test_split_accuracy_on_real_items_passes_and_says_so():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
    data = [(torch.randn(1, 2, 2), i % 2) for i in range(10)]
    report = parity.split_accuracy(net, {None: net}, data, None, 0.0)
    assert report["images"] == 10 and report["drop"] == 0.0 and report["status"] == "passed"
    assert parity.status(report) == "passed"
