"""Request decoding: every accepted format, and a clear 4xx for everything else."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from infkit.compile.batching import bucket_for
from infkit.serve.core.decode import ItemError, decode_request, decode_requests, open_image, parse_target
from infkit.serve.core.runtime import threads_per_worker

LABELS = [str(i) for i in range(10)]


def encoded(fmt: str, mode: str = "RGB", size=(12, 9)) -> bytes:
    image = Image.new("RGB", size, (30, 160, 90)).convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    "fmt, mode",
    [
        ("PNG", "RGB"),
        ("PNG", "L"),
        ("PNG", "RGBA"),
        ("PNG", "P"),
        ("PNG", "I;16"),
        ("JPEG", "RGB"),
        ("JPEG", "L"),
        ("BMP", "RGB"),
        ("GIF", "P"),
        ("WEBP", "RGB"),
        ("TIFF", "RGB"),
        ("TIFF", "L"),
        ("ICO", "RGBA"),
        ("PPM", "RGB"),
        ("TGA", "RGB"),
    ],
)
def test_formats_and_modes(fmt, mode):
    image = decode_request(encoded(fmt, mode), 10, LABELS).image
    assert image.size == (12, 9)


def test_raw_multipart_and_json_forms():
    png = encoded("PNG")
    b64 = base64.b64encode(png).decode()
    for item in (
        png,
        bytearray(png),
        {"body": png},
        {"data": png},
        {"data": png, "target": b"3"},
        {"body": {"data": b64}},
        {"body": json.dumps({"image": b64}).encode()},
        {"body": {"instances": [{"b64": b64}]}},
        {"body": {"data": f"data:image/png;base64,{b64}"}},
    ):
        assert decode_request(item, 10, LABELS).image.size == (12, 9)
    assert decode_request({"data": png, "target": b"3"}, 10, LABELS).target == 3
    assert decode_request({"body": {"data": b64, "target": 7}}, 10, LABELS).target == 7


@pytest.mark.parametrize(
    "item, status, words",
    [
        (b"", 400, "empty"),
        ({"body": b""}, 400, "empty"),
        (b"not an image at all", 415, "not a decodable image"),
        (encoded("PNG")[:40], 400, "corrupt or truncated"),
        ({"body": {"data": "%%%not base64"}}, 400, "base64"),
        ({"body": {"nothing": "here"}}, 400, "no image"),
        ({"something": b"x"}, 415, "cut it into form fields"),
        (b'{"data": "abc"', 400, "not valid JSON"),
        (b"[1, 2", 400, "not valid JSON"),
        ({"body": b'  {"data": '}, 400, "not valid JSON"),
        ({"body": {"instances": []}}, 400, "empty list"),
        ({"data": encoded("PNG"), "target": b"12"}, 400, "out of range"),
        ({"data": encoded("PNG"), "target": b"cat"}, 400, "neither a class index nor a label"),
    ],
)
def test_bad_items_get_their_own_status(item, status, words):
    with pytest.raises(ItemError) as err:
        decode_request(item, 10, LABELS)
    assert err.value.status == status and words in err.value.message
    assert err.value.body()["code"] == status


FORM = "application/x-www-form-urlencoded; charset=utf-8"


@pytest.mark.parametrize(
    "item, words",
    [
        ({}, "cut it into form fields"),  # TorchServe's form decoder left nothing: the bytes are gone
        ({"\x89PNG\r\n": b""}, "cut it into form fields"),
        (b"a=b&c=d", "is not an image"),  # a form body that reached the handler as the raw bytes it is
    ],
)
def test_a_form_body_without_an_image_is_415_with_the_curl_fix(item, words):
    with pytest.raises(ItemError) as err:
        decode_request(item, 10, LABELS, content_type=FORM)
    assert err.value.status == 415
    assert words in err.value.message and "-H 'Content-Type: image/png'" in err.value.message


def test_an_image_sent_as_form_data_is_decoded():
    """A form-typed body that reaches the handler as raw bytes: an image there is unambiguous."""
    assert decode_request(encoded("PNG"), 10, LABELS, content_type=FORM).image.size == (12, 9)
    assert decode_request({"body": encoded("JPEG")}, 10, LABELS, content_type=FORM).image.size == (12, 9)


def test_a_non_image_behind_the_front_names_how_to_send_one():
    """Behind nginx a form body arrives as application/octet-stream: the handler cannot tell it was a form (no
    header a client can forge is trusted), so every 415 for bytes that are not an image carries the curl fix."""
    with pytest.raises(ItemError) as err:
        decode_request(b"a=b&c=d", 10, LABELS, content_type="application/octet-stream")
    assert err.value.status == 415 and "not a decodable image (7 bytes)" in err.value.message
    assert "-H 'Content-Type: image/png' --data-binary @img.png" in err.value.message


def test_size_limit_is_413():
    with pytest.raises(ItemError) as err:
        open_image(encoded("PNG"), max_bytes=10)
    assert err.value.status == 413


def test_decompression_bomb_guard_is_kept():
    # 1x1 pixel data claiming a huge size would be caught; build a real large-but-cheap image instead
    big = Image.new("L", (Image.MAX_IMAGE_PIXELS // 10_000 + 1, 10_001))
    buf = io.BytesIO()
    big.save(buf, format="PNG", optimize=False)
    with pytest.raises(ItemError) as err:
        open_image(buf.getvalue(), max_bytes=1 << 30)
    assert err.value.status == 413 and "too large" in err.value.message
    assert Image.MAX_IMAGE_PIXELS is not None


def test_target_by_label():
    assert parse_target("b", 3, ["a", "b", "c"]) == 1
    assert parse_target(None, 3, ["a", "b", "c"]) is None


def test_buckets_and_threads():
    assert bucket_for(1, [1, 4, 8]) == 1
    assert bucket_for(3, [1, 4, 8]) == 4
    assert bucket_for(20, [1, 4, 8]) == 8
    assert threads_per_worker(1, cores=2) == 2
    assert threads_per_worker(2, cores=2) == 1
    assert threads_per_worker(4, cores=2) == 1
    assert np.prod([threads_per_worker(w, 16) for w in [3]]) * 3 <= 16


def test_a_json_list_of_images_is_answered_image_by_image():
    b64 = [base64.b64encode(encoded("PNG", size=(5 + i, 4))).decode() for i in range(3)]
    for item in (
        b64,
        {"instances": b64},
        {"data": b64},
        {"instances": [{"b64": b} for b in b64]},
        json.dumps({"instances": b64}).encode(),
    ):
        requests, many = decode_requests(item, 10, LABELS)
        assert many and [r.image.size for r in requests] == [(5, 4), (6, 4), (7, 4)]
    requests, many = decode_requests(encoded("PNG"), 10, LABELS)
    assert not many and len(requests) == 1


def test_one_bad_image_in_a_list_fails_the_request_and_names_it():
    good = base64.b64encode(encoded("PNG")).decode()
    bad = base64.b64encode(b"not an image").decode()
    with pytest.raises(ItemError) as err:
        decode_requests({"instances": [good, bad, good]}, 10, LABELS)
    assert err.value.status == 415 and err.value.message.startswith("image 1 of 3:")
    with pytest.raises(ItemError, match="2 images in one request"):
        decode_request([good, good], 10, LABELS)
