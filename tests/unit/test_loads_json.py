"""The JSON columns' decoder (`db.loads_json`) reads what json.loads reads, and refuses
what it refuses."""

from __future__ import annotations

import json

import pytest

from opsflow.db import loads_json


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "{}",
        '["b", "c"]',
        '{"a": [1, 2.5, null, true], "b": {"c": "\\u00e9"}}',
        '"text"',
        "3",
        "null",
        ' {"a": 1}',
        '{"a": 1} ',
        "\n[1]\n",
    ],
)
def test_reads_what_json_loads_reads(text: str) -> None:
    assert loads_json(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "[1", "[1] [2]", "{'a': 1}", "nul"])
def test_refuses_what_json_loads_refuses(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        loads_json(text)


def test_values_are_fresh_objects() -> None:
    first, second = loads_json('{"a": []}'), loads_json('{"a": []}')
    first["a"].append(1)
    assert second == {"a": []}
