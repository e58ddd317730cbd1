"""The one rule that matches stored conditions against a task (escalation policies and
maintenance windows both use it)."""

from __future__ import annotations

import uuid

import pytest

from opsflow.models.task import Task
from opsflow.tasks.conditions import Conditions, matches

TEAM = uuid.UUID("11111111-1111-4111-8111-111111111111")


def task(**fields: object) -> Task:
    values: dict[str, object] = {
        "priority": "CRITICAL",
        "task_type": "INCIDENT",
        "customer_tier": "ENTERPRISE",
        "service": "checkout",
        "team_id": TEAM,
        "tags": ["db", "prod"],
    }
    return Task(**(values | fields))


def test_no_conditions_match_every_task() -> None:
    assert matches({}, task(), None)
    assert matches(Conditions().given(), task(tags=[], team_id=None), None)


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ({"priority": ["HIGH", "CRITICAL"]}, True),
        ({"priority": ["LOW"]}, False),
        ({"task_type": ["TASK"]}, False),
        ({"customer_tier": ["ENTERPRISE"], "service": ["checkout"]}, True),
        ({"customer_tier": ["ENTERPRISE"], "service": ["search"]}, False),
        ({"tags": ["prod", "staging"]}, True),
        ({"tags": ["staging"]}, False),
        ({"team": [str(TEAM)]}, True),
        ({"team": ["payments"]}, True),
        ({"team": ["search"]}, False),
    ],
)
def test_every_condition_given_must_hold(conditions: dict[str, list[str]], expected: bool) -> None:
    assert matches(conditions, task(), "payments") is expected


def test_a_team_named_in_conditions_needs_the_team_name() -> None:
    assert not matches({"team": ["payments"]}, task(), None)


def test_given_keeps_only_the_keys_that_constrain() -> None:
    given = Conditions(priority=["HIGH"], tags=[]).given()
    assert given == {"priority": ["HIGH"]}
