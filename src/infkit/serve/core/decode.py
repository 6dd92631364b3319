"""One TorchServe request item -> a PIL image (or a per-item error with an HTTP status)."""

from __future__ import annotations

import base64
import binascii
import io
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError

# formats Pillow decodes in pure Python or its own C decoders (none hands the bytes to an outside program, as EPS
# does to Ghostscript); JPEG includes the multi-picture JPEGs (MPO) cameras write
FORMATS = ("PNG", "JPEG", "BMP", "DIB", "GIF", "WEBP", "TIFF", "ICO", "PPM", "TGA")
FORMAT_NAMES = "PNG, JPEG, BMP, GIF, WebP, TIFF, ICO, PPM or TGA"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
# keys a client may put the image under: raw body, multipart field names, JSON fields
IMAGE_KEYS = ("data", "body", "image", "file", "instances", "b64")
# JSON keys that hold a list of images, each answered in turn
LIST_KEYS = ("instances", "images")
FORM = "application/x-www-form-urlencoded"
FORM_HINT = (
    "send the image bytes with Content-Type application/octet-stream or image/* (curl -T img.png URL, or "
    "curl -H 'Content-Type: image/png' --data-binary @img.png URL), or as a multipart field 'data' "
    "(curl -F data=@img.png URL)"
)


FORM_MISTAKE = (
    "the body was sent as form data (Content-Type application/x-www-form-urlencoded, which curl --data-binary sends "
    "unless told otherwise)"
)


def is_form(content_type: str | None) -> bool:
    """Whether a Content-Type value is application/x-www-form-urlencoded."""
    return (content_type or "").split(";")[0].strip().lower() == FORM


class ItemError(Exception):
    """A problem with one request item: answered with `status` and a JSON error, the batch goes on."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def phrase(self) -> str:
        return {400: "Bad Request", 413: "Payload Too Large", 415: "Unsupported Media Type"}.get(self.status, "Error")

    def body(self) -> dict[str, Any]:
        return {"code": self.status, "type": self.phrase, "message": self.message}


@dataclass
class Request:
    image: Image.Image
    #: class index to explain (explanations only); None: the predicted class
    target: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


def _image_value(value: Any) -> bytes:
    if isinstance(value, dict):  # {"b64": ...} / {"data": ...}
        value = value.get("b64", value.get("data"))
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return _b64(value)
    raise ItemError(400, "an image in the JSON body is not a base64 string")


def _from_json(doc: Any) -> tuple[list[bytes], dict[str, Any], bool]:
    """(images, other fields, whether the client sent a list) from a parsed JSON body."""
    if isinstance(doc, list):
        return _images_of_list(doc), {}, True
    if isinstance(doc, str):
        return [_b64(doc)], {}, False
    if not isinstance(doc, dict):
        raise ItemError(400, 'JSON body must be an object like {"data": "<base64 image>"}')
    fields = {k: v for k, v in doc.items() if k not in IMAGE_KEYS and k not in LIST_KEYS}
    for key in IMAGE_KEYS + LIST_KEYS:
        if key in doc:
            value = doc[key]
            if isinstance(value, list):
                return _images_of_list(value), fields, True
            return [_image_value(value)], fields, False
    raise ItemError(400, f"JSON body has no image: put base64 image bytes under one of {', '.join(IMAGE_KEYS)}")


def _images_of_list(values: list) -> list[bytes]:
    if not values:
        raise ItemError(400, "the JSON body holds an empty list of images")
    return [_image_value(v) for v in values]


def _b64(text: str) -> bytes:
    if text.startswith("data:") and "," in text:  # data URL
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ItemError(400, "image field is not valid base64") from None


def payloads(item: Any, form: bool = False) -> tuple[list[bytes], dict[str, Any], bool]:
    """The image bytes of one request item (several when the client sent a JSON list), any JSON/multipart fields
    that came with them, and whether the client sent a list (then the answer is a list too). `form`: the client sent
    it as application/x-www-form-urlencoded."""
    fields: dict[str, Any] = {}
    raw: Any = item
    if isinstance(item, dict):
        fields = {k: v for k, v in item.items() if k not in IMAGE_KEYS}
        raw = next((item[k] for k in IMAGE_KEYS if k in item and item[k] is not None), None)
        if raw is None:
            if fields or form:  # TorchServe decoded a form body into fields: the bytes are gone
                raise ItemError(415, f"{FORM_MISTAKE} and TorchServe cut it into form fields; {FORM_HINT}")
            raise ItemError(400, "request has no image: " + FORM_HINT)
    if isinstance(raw, (dict, list)):  # TorchServe already parsed an application/json body
        images, doc_fields, many = _from_json(raw)
        return images, {**fields, **doc_fields}, many
    if isinstance(raw, str):
        raw = raw.encode()
    if not isinstance(raw, (bytes, bytearray)):
        raise ItemError(400, f"unsupported request body of type {type(raw).__name__}")
    data = bytes(raw)
    stripped = data.lstrip()
    if stripped[:1] in (b"{", b"["):  # no image format starts like this: it is JSON, or a mistake
        try:
            doc = json.loads(stripped)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ItemError(
                400,
                f'the body is not valid JSON ({exc}); send {{"data": "<base64 image>"}} or the image bytes themselves',
            ) from None
        images, doc_fields, many = _from_json(doc)
        return images, {**fields, **doc_fields}, many
    return [data], fields, False


def looks_like_image(data: bytes) -> bool:
    """True when the bytes start like one of the accepted formats."""
    return data.startswith(
        (
            b"\x89PNG",
            b"\xff\xd8\xff",
            b"BM",
            b"GIF87a",
            b"GIF89a",
            b"II*\x00",
            b"MM\x00*",
            b"\x00\x00\x01\x00",
            b"P3",
            b"P5",
            b"P6",
        )
    ) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def open_image(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Image.Image:
    """Decode image bytes, keeping PIL's decompression-bomb guard (its warning counts as an error)."""
    if not data:
        raise ItemError(400, f"empty request body: send image bytes ({FORMAT_NAMES})")
    if len(data) > max_bytes:
        raise ItemError(413, f"image is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.init()  # registers every plugin FORMATS names (idempotent; Pillow preloads only the common five)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ItemError(413, f"image too large to decode safely ({exc})") from None
    except UnidentifiedImageError:
        if looks_like_image(data):
            raise ItemError(400, f"image is corrupt or truncated ({len(data)} bytes of a known format)") from None
        raise ItemError(415, f"not a decodable image ({len(data)} bytes) in {FORMAT_NAMES}; {FORM_HINT}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ItemError(400, f"image is corrupt or truncated ({exc})") from None
    except Exception as exc:  # hostile files reach corners of the decoders: answer, never crash the worker
        raise ItemError(400, f"image could not be decoded ({type(exc).__name__}: {exc})") from None
    return image


def parse_target(value: Any, num_classes: int, labels: list[str]) -> int | None:
    """`target` for explanations: a class index or a label; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, (bytes, bytearray)):
        value = value.decode(errors="replace")
    text = str(value).strip()
    if text in labels:
        return labels.index(text)
    try:
        idx = int(text)
    except ValueError:
        raise ItemError(400, f"target {text!r} is neither a class index nor a label") from None
    if not 0 <= idx < num_classes:
        raise ItemError(400, f"target {idx} is out of range 0..{num_classes - 1}")
    return idx


def decode_requests(
    item: Any, num_classes: int, labels: list[str], max_bytes: int = DEFAULT_MAX_BYTES, content_type: str | None = None
) -> tuple[list[Request], bool]:
    """The images of one request item and whether the client sent a list (answered with a list, one answer per
    image). One bad image in a list fails the whole request with a 4xx naming it: never a partial answer.
    `content_type`: the client's Content-Type; a form body that holds no image is answered 415 with the fix."""
    form = is_form(content_type)
    images, fields, many = payloads(item, form)
    target = parse_target(fields.get("target"), num_classes, labels)
    requests = []
    for k, data in enumerate(images):
        try:
            requests.append(Request(image=open_image(data, max_bytes), target=target, options=fields))
        except ItemError as err:
            if form and err.status == 415:
                raise ItemError(415, f"{FORM_MISTAKE} and is not an image; {FORM_HINT}") from None
            if not many:
                raise
            raise ItemError(err.status, f"image {k} of {len(images)}: {err.message}") from None
    return requests, many


def decode_request(
    item: Any, num_classes: int, labels: list[str], max_bytes: int = DEFAULT_MAX_BYTES, content_type: str | None = None
) -> Request:
    """The one image of a request item (a list of several is a 400 here)."""
    requests, _ = decode_requests(item, num_classes, labels, max_bytes, content_type)
    if len(requests) != 1:
        raise ItemError(400, f"{len(requests)} images in one request; send one")
    return requests[0]
