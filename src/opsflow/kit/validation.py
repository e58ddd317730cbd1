"""Reusable input types: strings that PostgreSQL and SQLite both accept, bounded JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any
from zoneinfo import available_timezones

import email_validator
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Strict,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from opsflow.errors import ValidationFailed

MAX_METADATA_BYTES = 16 * 1024

# Operations teams run on internal domains: accept user@corp.local and user@host.internal.
email_validator.SPECIAL_USE_DOMAIN_NAMES[:] = [
    d for d in email_validator.SPECIAL_USE_DOMAIN_NAMES if d not in {"local", "test"}
]


_NUL = "must not contain NUL characters"


def _reject_nul(value: str) -> str:
    # PostgreSQL text and jsonb cannot store U+0000; reject it up front with a clear message.
    if "\x00" in value:
        raise ValueError(_NUL)
    return value


# The document states the rule too: a pattern that no string with U+0000 matches.
NO_NUL_PATTERN = "^[^\\x00]*$"


# Unicode White_Space, what pydantic strips and what `\s` means to its (Rust) patterns. Written
# out because `\s` means something else in the document's (ECMAScript) patterns.
# NOT_BLANK_PATTERN: text that is not blank once stripped, and free of U+0000, for fields
# declared with strip_whitespace and min_length=1.
WHITE_SPACE = "\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
NOT_BLANK_PATTERN = f"^[^\\x00]*[^\\x00{WHITE_SPACE}][^\\x00]*$"


def raw_max_length(limit: int) -> BeforeValidator:
    """For stripped text: the length limit counts the text as sent (white space included),
    as the document's maxLength does."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return value

    return BeforeValidator(check)


@dataclass(frozen=True)
class NoNul:
    """Annotation for text fields: refuses U+0000 and says so in the JSON schema (unless the
    field has a pattern of its own, which then must exclude it)."""

    pattern: str = NO_NUL_PATTERN

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_reject_nul, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.setdefault("pattern", self.pattern)
        return json_schema


reject_nul = _reject_nul  # for schemas elsewhere (NoNul() also states the rule)


_NESTED = 32


def _walk_no_nul(value: Any, depth: int = 0) -> None:
    # A string or a number in a container is checked in the loop rather than by a call of
    # its own (metadata is mostly those; an alert's payload has hundreds); only containers,
    # and anything past the depth limit (refused), are walked by a call.
    if depth > _NESTED:
        raise ValueError(f"is nested too deeply (max {_NESTED} levels)")
    if isinstance(value, str):
        _reject_nul(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in str(key):
                raise ValueError(_NUL)
            if depth >= _NESTED or isinstance(item, dict | list):
                _walk_no_nul(item, depth + 1)
            elif isinstance(item, str) and "\x00" in item:
                raise ValueError(_NUL)
    elif isinstance(value, list):
        for item in value:
            if depth >= _NESTED or isinstance(item, dict | list):
                _walk_no_nul(item, depth + 1)
            elif isinstance(item, str) and "\x00" in item:
                raise ValueError(_NUL)


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


LoginText = Annotated[str, StringConstraints(min_length=1, max_length=255), NoNul()]
SecretText = Annotated[str, StringConstraints(min_length=1, max_length=256), NoNul()]
TokenText = Annotated[str, StringConstraints(min_length=1, max_length=4096), NoNul()]
Reason = Annotated[str, StringConstraints(max_length=2000), NoNul()]
Address = Annotated[str, StringConstraints(max_length=500), NoNul()]


@cache
def time_zones() -> tuple[str, ...]:
    """The IANA time zone names this installation knows, sorted."""
    return tuple(sorted(available_timezones()))


def _known_zone(value: str) -> str:
    if value not in time_zones():
        raise ValueError("must be an IANA time zone such as Europe/Paris")
    return value


TimeZoneName = Annotated[
    str,
    AfterValidator(_known_zone),
    WithJsonSchema({"type": "string", "enum": list(time_zones())}),
]

# An instant as the API accepts it, in a query or a body: RFC 3339 with its time zone
# (`Z` or an offset), years 1900 to 8999 as written. The bounds keep every instant and
# its conversion to UTC representable (9999-12-31T23:59:59-14:00 would overflow), and
# the pattern is the whole rule, so the OpenAPI document states exactly what is refused.
INSTANT_PATTERN = (
    r"^(19|[2-8][0-9])[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_INSTANT = re.compile(INSTANT_PATTERN)


def _instant_text(value: Any) -> Any:
    if isinstance(value, str) and not _INSTANT.fullmatch(value):
        raise ValueError(
            "must be an instant with its time zone between the years 1900 and 8999, "
            "e.g. 2026-01-27T10:00:00Z"
        )
    return value


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_instant_text),
    AfterValidator(_to_utc),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": INSTANT_PATTERN}),
]


def _whole_number(value: Any) -> Any:
    # JSON Schema counts 2.0 as an integer; a string or a boolean is not one.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Numbers and booleans in JSON bodies are taken as JSON types, as the document states them:
# "5" is not a number and 0 is not false. An integer field is declared
# `Annotated[int, Field(ge=..., le=..., strict=True), WholeNumber]` (the bounds before
# WholeNumber, so that they stay in the document).
WholeNumber = BeforeValidator(_whole_number)
JsonFloat = Annotated[float, Strict(), Field(allow_inf_nan=False)]
JsonBool = Annotated[bool, Strict()]
Level = Annotated[int, Field(ge=1, le=999_999)]
Word = Annotated[str, StringConstraints(max_length=64), NoNul()]


Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    NoNul(NOT_BLANK_PATTERN),
    raw_max_length(500),
]
LongText = Annotated[str, StringConstraints(max_length=20_000), NoNul()]
ShortText = Annotated[str, StringConstraints(max_length=255), NoNul()]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
    NoNul(NOT_BLANK_PATTERN),
    raw_max_length(255),
]
# The name of a configuration entity kept in a 100-character column (escalation policies,
# webhooks, maintenance windows).
EntityName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    NoNul(NOT_BLANK_PATTERN),
    raw_max_length(100),
]
Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    NoNul(NOT_BLANK_PATTERN),
    raw_max_length(64),
]
SearchText = Annotated[str, StringConstraints(max_length=200), NoNul()]
Metadata = Annotated[dict[str, Any], AfterValidator(_check_metadata)]
Username = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=3,
        max_length=100,
        pattern=rf"^[{WHITE_SPACE}]*[A-Za-z0-9._-]+[{WHITE_SPACE}]*$",
    ),
    raw_max_length(100),
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256), NoNul()]


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


def null_only_for(*nullable: str) -> Callable[[dict[str, Any], type[Any]], None]:
    """`json_schema_extra` of a PATCH body: every field is optional, but only the named ones
    may be set to null (clearing them); the document offers null for those alone, as the
    server refuses it for the others."""

    def adjust(schema: dict[str, Any], model: type[Any]) -> None:
        for name, field in schema.get("properties", {}).items():
            if name in nullable or "anyOf" not in field:
                continue
            options = [o for o in field["anyOf"] if o != {"type": "null"}]
            if field.get("default", 0) is None:
                del field["default"]
            if len(options) == 1:
                del field["anyOf"]
                field.update({k: v for k, v in options[0].items() if k not in field})
            else:
                field["anyOf"] = options

    return adjust
