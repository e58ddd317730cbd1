"""Domain values to plain JSON values (audit rows, event payloads)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum

import pytest

from opsflow.kit.jsonable import to_jsonable
from opsflow.models.enums import Priority, TaskStatus


class Colour(Enum):
    RED = 1


def test_plain_values_pass_through() -> None:
    for value in (None, True, False, 0, -7, 10**30, "text", 1.5, -0.25):
        assert to_jsonable(value) == value
        assert type(to_jsonable(value)) is type(value)


def test_uuid() -> None:
    value = uuid.UUID("12345678-1234-4678-9234-567812345678")
    assert to_jsonable(value) == "12345678-1234-4678-9234-567812345678"


def test_aware_datetime_to_utc_z() -> None:
    paris = timezone(timedelta(hours=1))
    assert to_jsonable(datetime(2026, 1, 27, 11, 30, tzinfo=paris)) == "2026-01-27T10:30:00Z"
    assert to_jsonable(datetime(2026, 1, 27, 10, 30, tzinfo=UTC)) == "2026-01-27T10:30:00Z"


def test_naive_datetime_taken_as_utc() -> None:
    assert to_jsonable(datetime(2026, 1, 27, 10, 30, 5, 250000)) == "2026-01-27T10:30:05.250000Z"


def test_enums_give_their_values() -> None:
    assert to_jsonable(Colour.RED) == 1
    assert to_jsonable(TaskStatus.IN_PROGRESS) == "IN_PROGRESS"
    assert json.dumps(to_jsonable({"p": Priority.HIGH})) == '{"p": "HIGH"}'


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1e16, 10**16), (-1e16, -(10**16)), (1e300, int(1e300)), (2.5e17, 250_000_000_000_000_000)],
)
def test_large_integral_floats_become_ints(value: float, expected: int) -> None:
    result = to_jsonable(value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("value", [9.9e15, 5.0, 1e15, 1.5e-7])
def test_smaller_floats_stay_floats(value: float) -> None:
    result = to_jsonable(value)
    assert result == value
    assert type(result) is float


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_become_none(value: float) -> None:
    assert to_jsonable(value) is None


def test_decimal_as_string() -> None:
    assert to_jsonable(Decimal("1.10")) == "1.10"


def test_nested_structures() -> None:
    task_id = uuid.uuid4()
    value = {
        "id": task_id,
        task_id: "uuid key",
        3: ("a", TaskStatus.BLOCKED, [float("nan"), {"when": datetime(2026, 1, 1, tzinfo=UTC)}]),
    }
    assert to_jsonable(value) == {
        str(task_id): "uuid key",
        "id": str(task_id),
        "3": ["a", "BLOCKED", [None, {"when": "2026-01-01T00:00:00Z"}]],
    }


def test_sets_become_lists() -> None:
    result = to_jsonable({"b", "a"})
    assert isinstance(result, list)
    assert sorted(result) == ["a", "b"]
    assert to_jsonable(frozenset()) == []


def test_result_is_strict_json() -> None:
    value = {"x": [float("inf"), 1e20, uuid.uuid4(), datetime(2026, 1, 1)], "y": object()}
    json.dumps(to_jsonable(value), allow_nan=False)


def test_unknown_objects_become_strings() -> None:
    class Thing:
        def __str__(self) -> str:
            return "thing"

    assert to_jsonable(Thing()) == "thing"
