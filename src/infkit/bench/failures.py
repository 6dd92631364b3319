"""Failed requests in words: what the server answered (`404 ModelNotFoundException: Model not found: x`, as
TorchServe's JSON error body says it) or why nothing came back (status 0: refused, reset, timed out)."""

from __future__ import annotations

import json

MAX_TEXT = 200


def describe(status: int, text: str) -> str:
    """One line for a failed answer: its status, then the error type and message of a JSON error body (TorchServe's
    {"code", "type", "message"}, or {"error", "detail"}), else the start of the body as sent."""
    if status == 0:
        return f"no answer ({text or 'transport error'})"
    said = ""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        kind = doc.get("type") or doc.get("error") or ""
        message = doc.get("message") or doc.get("detail") or ""
        said = f"{kind}: {message}" if kind and message else str(kind or message)
    if not said:
        said = " ".join(text.split())
    said = said if len(said) <= MAX_TEXT else said[: MAX_TEXT - 1] + "…"
    return f"{status} {said}".rstrip()


def first_errors(errors: dict[int, tuple[float, str]]) -> tuple[str | None, dict[str, str]]:
    """(the earliest failed answer in words, or None; each failing status's first answer in words)."""
    by_status = {str(s): describe(s, text) for s, (_, text) in sorted(errors.items())}
    if not errors:
        return None, by_status
    status, (_, text) = min(errors.items(), key=lambda item: item[1][0])
    return describe(status, text), by_status
