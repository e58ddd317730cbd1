"""Reusable input types: strings that PostgreSQL and SQLite both accept, bounded JSON."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import email_validator
from pydantic import AfterValidator, BaseModel, StringConstraints

from opsflow.errors import ValidationFailed

MAX_METADATA_BYTES = 16 * 1024

# Operations teams run on internal domains: accept user@corp.local and user@host.internal.
email_validator.SPECIAL_USE_DOMAIN_NAMES[:] = [
    d for d in email_validator.SPECIAL_USE_DOMAIN_NAMES if d not in {"local", "test"}
]


def _reject_nul(value: str) -> str:
    # PostgreSQL text and jsonb cannot store U+0000; reject it up front with a clear message.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


reject_nul = _reject_nul  # for schemas elsewhere


def _walk_no_nul(value: Any, depth: int = 0) -> None:
    if depth > 32:
        raise ValueError("is nested too deeply (max 32 levels)")
    if isinstance(value, str):
        _reject_nul(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(str(key))
            _walk_no_nul(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _walk_no_nul(item, depth + 1)


def _check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    _walk_no_nul(value)
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise ValueError("must not contain NaN or Infinity") from exc
    size = len(text.encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes as JSON (got {size})")
    return value


LoginText = Annotated[
    str, StringConstraints(min_length=1, max_length=255), AfterValidator(_reject_nul)
]
SecretText = Annotated[
    str, StringConstraints(min_length=1, max_length=256), AfterValidator(_reject_nul)
]
TokenText = Annotated[
    str, StringConstraints(min_length=1, max_length=4096), AfterValidator(_reject_nul)
]
Reason = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_reject_nul)]
Address = Annotated[str, StringConstraints(max_length=500), AfterValidator(_reject_nul)]


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("must be an IANA time zone such as Europe/Paris") from exc
    return value


TimeZoneName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    AfterValidator(_reject_nul),
    AfterValidator(_known_zone),
]
Word = Annotated[str, StringConstraints(max_length=64), AfterValidator(_reject_nul)]


Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(_reject_nul),
]
LongText = Annotated[str, StringConstraints(max_length=20_000), AfterValidator(_reject_nul)]
ShortText = Annotated[str, StringConstraints(max_length=255), AfterValidator(_reject_nul)]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
    AfterValidator(_reject_nul),
]
Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(_reject_nul),
]
SearchText = Annotated[str, StringConstraints(max_length=200), AfterValidator(_reject_nul)]
Metadata = Annotated[dict[str, Any], AfterValidator(_check_metadata)]
Username = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=100, pattern=r"^[A-Za-z0-9._-]+$"
    ),
]
Password = Annotated[
    str, StringConstraints(min_length=8, max_length=256), AfterValidator(_reject_nul)
]


def patch_fields(
    data: BaseModel, *, nullable: Collection[str] = (), exclude: Collection[str] = ()
) -> dict[str, Any]:
    """The fields a PATCH body sets; a `null` for a field that cannot be empty is refused
    (every such field named at once)."""
    fields = data.model_dump(exclude_unset=True, exclude=set(exclude))
    nulls = [key for key, value in fields.items() if value is None and key not in nullable]
    if nulls:
        raise ValidationFailed(
            details=[{"field": key, "message": "must not be null"} for key in nulls]
        )
    return fields
