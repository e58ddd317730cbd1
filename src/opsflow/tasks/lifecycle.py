"""The task status machine (pure).

CREATED → ASSIGNED (assignment) → IN_PROGRESS (start) ↔ BLOCKED → COMPLETED; any open
status → CANCELLED; COMPLETED → IN_PROGRESS by reopen. Everything else is refused with
the list of what *is* allowed from the current status.
"""

from __future__ import annotations

from enum import StrEnum

from opsflow.errors import InvalidTransition
from opsflow.models.enums import TaskStatus

CREATED, ASSIGNED, IN_PROGRESS, BLOCKED, COMPLETED, CANCELLED = (
    TaskStatus.CREATED,
    TaskStatus.ASSIGNED,
    TaskStatus.IN_PROGRESS,
    TaskStatus.BLOCKED,
    TaskStatus.COMPLETED,
    TaskStatus.CANCELLED,
)
OPEN = frozenset({CREATED, ASSIGNED, IN_PROGRESS, BLOCKED})


class Action(StrEnum):
    UPDATE = "update"
    ASSIGN = "assign"
    ACKNOWLEDGE = "acknowledge"
    START = "start"
    BLOCK = "block"
    UNBLOCK = "unblock"
    COMPLETE = "complete"
    SNOOZE = "snooze"
    REOPEN = "reopen"
    CANCEL = "cancel"
    PAUSE_SLA = "pause_sla"
    RESUME_SLA = "resume_sla"


def _same(*statuses: TaskStatus) -> dict[TaskStatus, TaskStatus]:
    return {s: s for s in statuses}


TRANSITIONS: dict[Action, dict[TaskStatus, TaskStatus]] = {
    Action.UPDATE: _same(CREATED, ASSIGNED, IN_PROGRESS, BLOCKED, COMPLETED),
    Action.ASSIGN: {
        CREATED: ASSIGNED,
        ASSIGNED: ASSIGNED,
        IN_PROGRESS: IN_PROGRESS,
        BLOCKED: BLOCKED,
    },
    Action.ACKNOWLEDGE: {CREATED: ASSIGNED, ASSIGNED: ASSIGNED},
    Action.START: {CREATED: IN_PROGRESS, ASSIGNED: IN_PROGRESS},
    Action.BLOCK: {IN_PROGRESS: BLOCKED},
    Action.UNBLOCK: {BLOCKED: IN_PROGRESS},
    Action.COMPLETE: {IN_PROGRESS: COMPLETED, BLOCKED: COMPLETED},
    Action.SNOOZE: _same(*OPEN),
    Action.REOPEN: {COMPLETED: IN_PROGRESS},
    Action.CANCEL: dict.fromkeys(OPEN, CANCELLED),
    Action.PAUSE_SLA: _same(*OPEN),
    Action.RESUME_SLA: _same(*OPEN),
}


def allowed_from(status: TaskStatus) -> list[dict[str, str]]:
    return [
        {"action": action.value, "to": table[status].value}
        for action, table in TRANSITIONS.items()
        if status in table
    ]


def next_status(status: TaskStatus, action: Action) -> TaskStatus:
    table = TRANSITIONS[action]
    if status not in table:
        raise InvalidTransition(
            f"Cannot {action.value} a task in status {status.value}",
            current_status=status.value,
            action=action.value,
            allowed_transitions=allowed_from(status),
        )
    return table[status]


def is_open(status: TaskStatus) -> bool:
    return status in OPEN
