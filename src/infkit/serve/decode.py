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

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
# keys a client may put the image under: raw body, multipart field names, JSON fields
IMAGE_KEYS = ("data", "body", "image", "file", "instances", "b64")


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


def _from_json(doc: Any) -> tuple[bytes, dict[str, Any]]:
    if isinstance(doc, list) and doc:
        doc = doc[0]
    if isinstance(doc, str):
        return _b64(doc), {}
    if not isinstance(doc, dict):
        raise ItemError(400, "JSON body must be an object like {\"data\": \"<base64 image>\"}")
    for key in IMAGE_KEYS:
        if key in doc:
            value = doc[key]
            if isinstance(value, list) and value:
                value = value[0]
            if isinstance(value, dict):  # {"instances": [{"b64": ...}]} / {"data": {"b64": ...}}
                value = value.get("b64", value.get("data"))
            if isinstance(value, (bytes, bytearray)):
                return bytes(value), doc
            if isinstance(value, str):
                return _b64(value), doc
    raise ItemError(400, f"JSON body has no image: put base64 image bytes under one of {', '.join(IMAGE_KEYS)}")


def _b64(text: str) -> bytes:
    if text.startswith("data:") and "," in text:  # data URL
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ItemError(400, "image field is not valid base64") from None


def payload(item: Any) -> tuple[bytes, dict[str, Any]]:
    """The image bytes of one request item and any JSON/multipart fields that came with it."""
    fields: dict[str, Any] = {}
    raw: Any = item
    if isinstance(item, dict):
        fields = {k: v for k, v in item.items() if k not in IMAGE_KEYS}
        raw = next((item[k] for k in IMAGE_KEYS if k in item and item[k] is not None), None)
        if raw is None:
            raise ItemError(400, "request has no image: send the bytes as the body or as a multipart field "
                                 "named 'data'")
    if isinstance(raw, (dict, list)):  # TorchServe already parsed an application/json body
        data, doc = _from_json(raw)
        return data, {**fields, **{k: v for k, v in (doc or {}).items() if k not in IMAGE_KEYS}}
    if isinstance(raw, str):
        raw = raw.encode()
    if not isinstance(raw, (bytes, bytearray)):
        raise ItemError(400, f"unsupported request body of type {type(raw).__name__}")
    data = bytes(raw)
    stripped = data.lstrip()
    if stripped[:1] in (b"{", b"["):
        try:
            doc = json.loads(stripped)
        except (json.JSONDecodeError, UnicodeDecodeError):
            doc = None
        if doc is not None:
            data, extra = _from_json(doc)
            fields.update({k: v for k, v in extra.items() if k not in IMAGE_KEYS})
    return data, fields


def looks_like_image(data: bytes) -> bool:
    """True when the bytes start like one of the accepted formats."""
    return (data.startswith((b"\x89PNG", b"\xff\xd8\xff", b"BM", b"GIF87a", b"GIF89a"))
            or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"))


def open_image(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Image.Image:
    """Decode image bytes, keeping PIL's decompression-bomb guard (its warning counts as an error)."""
    if not data:
        raise ItemError(400, "empty request body: send image bytes (PNG, JPEG, BMP, GIF or WebP)")
    if len(data) > max_bytes:
        raise ItemError(413, f"image is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ItemError(413, f"image too large to decode safely ({exc})") from None
    except UnidentifiedImageError:
        if looks_like_image(data):
            raise ItemError(400, f"image is corrupt or truncated ({len(data)} bytes of a known format)") from None
        raise ItemError(415, f"not a decodable image ({len(data)} bytes); send PNG, JPEG, BMP, GIF or WebP") from None
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


def decode_request(item: Any, num_classes: int, labels: list[str], max_bytes: int = DEFAULT_MAX_BYTES) -> Request:
    data, fields = payload(item)
    image = open_image(data, max_bytes)
    target = parse_target(fields.get("target"), num_classes, labels)
    return Request(image=image, target=target, options=fields)
