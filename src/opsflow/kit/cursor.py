"""Opaque cursors for keyset pagination: a few strings, base64url-encoded JSON.

A cursor says where the previous page stopped (the sort key of its last item); the next
page starts strictly after it. A cursor that does not decode answers 400.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from opsflow.errors import ValidationFailed

MAX_CURSOR_CHARS = 512
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,512}={0,2}$"


def encode(*parts: str) -> str:
    raw = json.dumps(list(parts), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, size: int) -> list[str]:
    """The `size` strings of a cursor made by :func:`encode`, or 400."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        parts = None
    if (
        not isinstance(parts, list)
        or len(parts) != size
        or not all(isinstance(p, str) for p in parts)
    ):
        raise ValidationFailed(
            details=[{"field": "cursor", "message": "not a cursor this list gave out"}]
        )
    return parts


def instant(text: str) -> datetime:
    """A cursor's instant (written with `isoformat`), or 400."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise ValidationFailed(
            details=[{"field": "cursor", "message": "not a cursor this list gave out"}]
        )
    return value
