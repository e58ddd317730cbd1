"""Parsing the `If-Match` header of task PATCHes (`tasks/endpoints.py::parse_if_match`)."""

from __future__ import annotations

import pytest

from opsflow.errors import ValidationFailed
from opsflow.tasks.endpoints import parse_if_match


@pytest.mark.parametrize(
    ("header", "version"),
    [
        ("3", 3),
        ('"3"', 3),
        ('W/"3"', 3),
        (" 12 ", 12),
        ("0", 0),
        ('"123456789012"', 123_456_789_012),
    ],
)
def test_version_forms(header: str, version: int) -> None:
    assert parse_if_match(header) == version


@pytest.mark.parametrize("header", [None, "*", " * "])
def test_absent_or_wildcard_means_any_version(header: str | None) -> None:
    assert parse_if_match(header) is None


@pytest.mark.parametrize(
    "header",
    ["", '""', "abc", "-1", "1.5", "0x3", "W/", 'W/"abc"', '"3", "4"', "1234567890123"],
)
def test_garbage_is_a_validation_error(header: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_if_match(header)
    assert info.value.status_code == 400
    assert info.value.details is not None
    assert info.value.details[0]["field"] == "If-Match"


@pytest.mark.parametrize("header", ["²", '"³"', "¹2"])
def test_superscript_digits_are_a_validation_error(header: str) -> None:
    with pytest.raises(ValidationFailed):
        parse_if_match(header)
