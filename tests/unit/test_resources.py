"""The live-test images follow the original lightning-hydra-timm project's naming: `<0-9>_<label>.png`, one per class,
so its test (which reads the expected label as `image.stem[2:]`) passes against infkit unchanged."""

from pathlib import Path

import pytest

from infkit.data.digits import DIGIT_CLASSES

RESOURCES = Path(__file__).resolve().parents[1] / "resources"


@pytest.mark.parametrize("dataset, classes", [("digits", DIGIT_CLASSES)])
def test_one_image_per_class_named_for_the_original_rule(dataset, classes):
    images = sorted((RESOURCES / dataset).glob("*.png"))
    assert len(images) == len(classes) == 10
    assert sorted(image.stem[0] for image in images) == [str(i) for i in range(10)]
    assert all(image.stem[1] == "_" for image in images)
    assert sorted(image.stem[2:] for image in images) == sorted(classes)
