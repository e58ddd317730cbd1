"""The task status machine, walked over every (status, action) pair.

The expected table is written here from the documented status machine (docs/api.md), not
copied from the code:

    CREATED → ASSIGNED (assignment) → IN_PROGRESS (start; an unassigned task may be started
    directly) ↔ BLOCKED → COMPLETED; any open status → CANCELLED; COMPLETED → IN_PROGRESS by
    reopen. Everything else is 409 INVALID_TRANSITION naming the allowed transitions.

Where that machine says nothing (update, acknowledge, snooze, re-assigning), the table records the
choice an operations engineer expects: re-assigning keeps the status of an open task,
acknowledging is only for tasks nobody has started yet, snoozing and pausing the SLA are
for open tasks, and a
cancelled task is frozen.
"""

from __future__ import annotations

from typing import TypeAlias

import pytest

from opsflow.errors import InvalidTransition
from opsflow.models.enums import TaskStatus
from opsflow.tasks.lifecycle import Action, allowed_from, is_open, next_status

S: TypeAlias = TaskStatus
A: TypeAlias = Action

EXPECTED: dict[S, dict[A, S]] = {
    S.CREATED: {
        A.UPDATE: S.CREATED,
        A.ASSIGN: S.ASSIGNED,
        A.ACKNOWLEDGE: S.ASSIGNED,  # acknowledging takes the task
        A.START: S.IN_PROGRESS,  # starting an unassigned task assigns the starter
        A.SNOOZE: S.CREATED,
        A.PAUSE_SLA: S.CREATED,  # pausing/resuming the SLA clocks leaves the status alone
        A.RESUME_SLA: S.CREATED,
        A.CANCEL: S.CANCELLED,
    },
    S.ASSIGNED: {
        A.UPDATE: S.ASSIGNED,
        A.ASSIGN: S.ASSIGNED,
        A.ACKNOWLEDGE: S.ASSIGNED,
        A.START: S.IN_PROGRESS,
        A.SNOOZE: S.ASSIGNED,
        A.PAUSE_SLA: S.ASSIGNED,  # pausing/resuming the SLA clocks leaves the status alone
        A.RESUME_SLA: S.ASSIGNED,
        A.CANCEL: S.CANCELLED,
    },
    S.IN_PROGRESS: {
        A.UPDATE: S.IN_PROGRESS,
        A.ASSIGN: S.IN_PROGRESS,
        A.BLOCK: S.BLOCKED,
        A.COMPLETE: S.COMPLETED,
        A.SNOOZE: S.IN_PROGRESS,
        A.PAUSE_SLA: S.IN_PROGRESS,  # pausing/resuming the SLA clocks leaves the status alone
        A.RESUME_SLA: S.IN_PROGRESS,
        A.CANCEL: S.CANCELLED,
    },
    S.BLOCKED: {
        A.UPDATE: S.BLOCKED,
        A.ASSIGN: S.BLOCKED,
        A.UNBLOCK: S.IN_PROGRESS,
        A.COMPLETE: S.COMPLETED,
        A.SNOOZE: S.BLOCKED,
        A.PAUSE_SLA: S.BLOCKED,  # pausing/resuming the SLA clocks leaves the status alone
        A.RESUME_SLA: S.BLOCKED,
        A.CANCEL: S.CANCELLED,
    },
    S.COMPLETED: {
        A.UPDATE: S.COMPLETED,  # resolution notes stay editable
        A.REOPEN: S.IN_PROGRESS,
    },
    S.CANCELLED: {},
}

ALL_PAIRS = [(status, action) for status in S for action in A]
ALLOWED = [(s, a) for s, a in ALL_PAIRS if a in EXPECTED[s]]
REFUSED = [(s, a) for s, a in ALL_PAIRS if a not in EXPECTED[s]]


def _ids(pair: tuple[S, A]) -> str:
    return f"{pair[0].value}-{pair[1].value}"


def test_table_covers_every_status_and_action() -> None:
    assert set(EXPECTED) == set(S)
    assert len(ALLOWED) + len(REFUSED) == len(S) * len(A) == 72


@pytest.mark.parametrize("pair", ALLOWED, ids=_ids)
def test_allowed_transition(pair: tuple[S, A]) -> None:
    status, action = pair
    assert next_status(status, action) is EXPECTED[status][action]


@pytest.mark.parametrize("pair", REFUSED, ids=_ids)
def test_refused_transition_names_exactly_the_allowed_ones(pair: tuple[S, A]) -> None:
    status, action = pair
    with pytest.raises(InvalidTransition) as info:
        next_status(status, action)
    error = info.value
    assert error.status_code == 409
    assert error.code == "INVALID_TRANSITION"
    assert error.extra["current_status"] == status.value
    assert error.extra["action"] == action.value
    listed = error.extra["allowed_transitions"]
    expected = [{"action": a.value, "to": to.value} for a, to in EXPECTED[status].items()]
    assert sorted(listed, key=lambda t: t["action"]) == sorted(expected, key=lambda t: t["action"])
    assert len(listed) == len(expected)  # no duplicates hidden by the comparison above


@pytest.mark.parametrize("status", list(S), ids=lambda s: s.value)
def test_allowed_from_matches_the_table(status: S) -> None:
    assert {(t["action"], t["to"]) for t in allowed_from(status)} == {
        (a.value, to.value) for a, to in EXPECTED[status].items()
    }


def test_cancelled_is_terminal() -> None:
    assert allowed_from(S.CANCELLED) == []


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (S.CREATED, True),
        (S.ASSIGNED, True),
        (S.IN_PROGRESS, True),
        (S.BLOCKED, True),
        (S.COMPLETED, False),
        (S.CANCELLED, False),
    ],
)
def test_is_open(status: S, expected: bool) -> None:
    assert is_open(status) is expected


def test_spec_happy_path_walks_through() -> None:
    status = S.CREATED
    for action, expected in [
        (A.ASSIGN, S.ASSIGNED),
        (A.START, S.IN_PROGRESS),
        (A.BLOCK, S.BLOCKED),
        (A.UNBLOCK, S.IN_PROGRESS),
        (A.COMPLETE, S.COMPLETED),
        (A.REOPEN, S.IN_PROGRESS),
        (A.CANCEL, S.CANCELLED),
    ]:
        status = next_status(status, action)
        assert status is expected
