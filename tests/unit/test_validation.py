"""Input types: NUL characters, the 16 KiB metadata limit and the nesting limit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from opsflow.kit.validation import (
    MAX_METADATA_BYTES,
    LoginText,
    LongText,
    Metadata,
    Name,
    Password,
    Reason,
    SearchText,
    SecretText,
    ShortText,
    Tag,
    Title,
    TokenText,
    Word,
)

metadata = TypeAdapter(Metadata)


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def padded(size: int, filler: str = "a") -> dict[str, str]:
    """A metadata dict whose compact JSON is exactly `size` bytes."""
    overhead = json_size({"k": ""})
    value = {"k": filler * ((size - overhead) // len(filler.encode()))}
    assert json_size(value) == size
    return value


TEXT_TYPES: dict[str, Any] = {
    "Title": Title,
    "LongText": LongText,
    "ShortText": ShortText,
    "Name": Name,
    "Tag": Tag,
    "Password": Password,
    "LoginText": LoginText,
    "SecretText": SecretText,
    "TokenText": TokenText,
    "Reason": Reason,
    "Word": Word,
    "SearchText": SearchText,
}


@pytest.mark.parametrize("name", list(TEXT_TYPES))
def test_nul_rejected_in_text(name: str) -> None:
    adapter = TypeAdapter(TEXT_TYPES[name])
    assert adapter.validate_python("fine text") == "fine text"
    with pytest.raises(ValidationError, match="NUL"):
        adapter.validate_python("bad\x00text")


def test_title_bounds() -> None:
    title = TypeAdapter(Title)
    assert title.validate_python("  padded  ") == "padded"
    assert title.validate_python("x" * 500) == "x" * 500
    for bad in ("", "   ", "x" * 501):
        with pytest.raises(ValidationError):
            title.validate_python(bad)


def test_metadata_accepts_plain_json() -> None:
    value = {"service": "api", "n": 3, "tags": ["a", {"b": None}], "ok": True}
    assert metadata.validate_python(value) == value


@pytest.mark.parametrize(
    "value",
    [
        {"a": "x\x00"},
        {"a\x00": "x"},
        {"a": {"b": ["ok", "no\x00"]}},
        {"a": [{"deep\x00key": 1}]},
    ],
)
def test_metadata_rejects_nul_anywhere(value: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="NUL"):
        metadata.validate_python(value)


def test_metadata_size_limit_is_16_kib() -> None:
    assert MAX_METADATA_BYTES == 16 * 1024
    metadata.validate_python(padded(16 * 1024))
    with pytest.raises(ValidationError, match="16384 bytes"):
        metadata.validate_python(padded(16 * 1024 + 1))


def test_metadata_size_counts_utf8_bytes_not_characters() -> None:
    value = padded(16 * 1024 + 2, filler="é")  # 2 bytes per character
    assert len(json.dumps(value, ensure_ascii=False)) < 16 * 1024
    with pytest.raises(ValidationError, match="bytes"):
        metadata.validate_python(value)


def nested(levels: int, leaf: Any = 1, *, container: str = "dict") -> Any:
    value = leaf
    for _ in range(levels):
        value = {"k": value} if container == "dict" else [value]
    return value


@pytest.mark.parametrize("container", ["dict", "list"])
def test_metadata_nesting_limit(container: str) -> None:
    # The top-level object plus 31 containers inside it: 32 levels in all.
    metadata.validate_python({"k": nested(31, container=container)})
    with pytest.raises(ValidationError, match="nested too deeply"):
        metadata.validate_python({"k": nested(32, container=container)})


def test_absurd_nesting_is_a_validation_error_not_a_crash() -> None:
    with pytest.raises(ValidationError, match="nested too deeply"):
        metadata.validate_python({"k": nested(500)})
