"""Input types: NUL characters, the 16 KiB metadata limit and the nesting limit."""

from __future__ import annotations

import json
import random
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


def _rule(value: Any, depth: int = 0) -> None:
    """The metadata rule as first written: every value walked by a call of its own."""
    if depth > 32:
        raise ValueError("is nested too deeply (max 32 levels)")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in str(key):
                raise ValueError("must not contain NUL characters")
            _rule(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _rule(item, depth + 1)


def _width(rng: random.Random) -> int:
    # Mostly one child: deep values stay small.
    return rng.choice((0, 1, 1, 1, 1, 1, 1, 2))


def _verdict(check: Any, value: Any) -> str:
    try:
        check(value)
    except (ValueError, ValidationError) as exc:
        return "nested" if "nested too deeply" in str(exc) else "NUL"
    return "ok"


def test_metadata_walk_refuses_exactly_what_the_rule_refuses() -> None:
    """Around the depth limit, scalars and containers, NUL in keys and values, first fault
    first: the same verdict as the rule walking every value by a call."""
    import random

    rng = random.Random(11)
    leaves: list[Any] = [1, 2.5, None, True, "text", "nul\x00", "", "é✓"]

    def build(levels: int) -> Any:
        if levels == 0 or rng.random() < 0.1:
            return rng.choice(leaves)
        if rng.random() < 0.5:
            keys = [rng.choice(["a", "b\x00", "c", "d"]) for _ in range(_width(rng))]
            return {key: build(levels - 1) for key in keys}
        return [build(levels - 1) for _ in range(_width(rng))]

    values = [{"k": nested(n, leaf)} for n in (30, 31, 32, 33) for leaf in leaves]
    values += [{"k": nested(n, leaf, container="list")} for n in (31, 32) for leaf in leaves]
    values += [{"top": build(rng.randint(1, 36))} for _ in range(2000)]
    verdicts = [(_verdict(_rule, v), _verdict(metadata.validate_python, v)) for v in values]
    assert all(rule == walk for rule, walk in verdicts)
    assert {rule for rule, _ in verdicts} == {"ok", "NUL", "nested"}
