"""The `sla_status` shown on tasks: where each of a task's clocks stands at a given instant.

Read from the clocks themselves (`sla_clocks`): their stored threshold instants decide the
state, the calendar decides how much working time has elapsed. A clock "stands" at the
instant it stopped or was paused; a running one at `now`. The same rules, written in SQL,
drive the `sla_state` and `has_breach` filters (tasks.repository), so a task listed as
`warning` shows `warning`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, Literal

from opsflow.kit.durations import humanize
from opsflow.models.enums import ClockStatus
from opsflow.models.sla import SlaClock
from opsflow.sla.calendar import working_seconds
from opsflow.sla.clocks import calendar_of, pause_intervals

State = Literal["compliant", "warning", "critical", "breached"]
STATES: tuple[State, ...] = ("compliant", "warning", "critical", "breached")
_LEVEL: dict[State, int] = {state: level for level, state in enumerate(STATES)}
_AT_RISK = frozenset(("warning", "critical"))
# What a view reads of a clock row, in the order `ClockView.at` takes it.
CLOCK_COLUMNS = (
    "kind",
    "status",
    "cancelled",
    "target_minutes",
    "started_at",
    "deadline",
    "warning_at",
    "critical_at",
    "stopped_at",
    "paused_at",
    "calendar_name",
    "calendar_spec",
    "pauses",
)
_COLUMNS = frozenset(CLOCK_COLUMNS)
_VALUES = itemgetter(*CLOCK_COLUMNS)


@dataclass(frozen=True, slots=True)
class ClockView:
    """One clock as it stands at `now`. Every derived figure (state, remaining time, ...) is
    worked out once, when the view is made: a page of tasks reads each several times."""

    kind: str  # START | RESOLVE
    status_stored: str  # ACTIVE | PAUSED | MET | BREACHED | CANCELLED
    cancelled: bool  # stopped by cancellation (a breached clock keeps BREACHED)
    target_minutes: int
    started_at: datetime
    deadline: datetime
    warning_at: datetime | None
    critical_at: datetime | None
    stopped_at: datetime | None
    paused_at: datetime | None
    now: datetime
    working_elapsed: timedelta
    # Derived from the above (see `at`).
    running: bool
    until: datetime  # the instant the clock stands at: stopped, paused, or `now`
    remaining: timedelta  # wall-clock time left until the deadline (negative when overdue)
    breached: bool
    met: bool | None  # None while running or cancelled; otherwise not breached
    percent: float  # working time used, in per cent of the target
    state: State
    status: str

    @classmethod
    def of(cls, clock: SlaClock, now: datetime) -> ClockView:
        # The loaded row's values, read from the instance's own dictionary: a page of tasks
        # makes 40 views, and each instrumented attribute read costs a descriptor call.
        row = clock.__dict__
        if not _COLUMNS.issubset(row):  # a column not loaded (or expired): read it normally
            row = {name: getattr(clock, name) for name in _COLUMNS}
        return cls.at(now, *_VALUES(row))

    @classmethod
    def at(
        cls,
        now: datetime,
        kind: str,
        status_stored: str,
        cancelled: bool,
        target_minutes: int,
        started_at: datetime,
        deadline: datetime,
        warning_at: datetime | None,
        critical_at: datetime | None,
        stopped_at: datetime | None,
        paused_at: datetime | None,
        calendar_name: str | None,
        calendar_spec: dict[str, Any] | None,
        pauses: list[Any] | None,
    ) -> ClockView:
        """The clock whose columns (`CLOCK_COLUMNS`, in order) are these, as it stands at
        `now`: what a read of plain rows (a page of tasks) gives, no ORM instance needed.
        None stands for no pauses (`[]`) as it does for a 24x7 calendar."""
        # A paused clock stands still at the instant it was paused.
        until = stopped_at or paused_at or now
        calendar = None if calendar_name is None else calendar_of(calendar_name, calendar_spec)
        if not pauses and (calendar is None or calendar.is_always):
            # Every instant counts (24x7, never paused): what working_seconds would sum,
            # without its checks and its walk over the working intervals.
            elapsed = (max(until, started_at) - started_at).total_seconds()
        else:
            elapsed = working_seconds(
                calendar or calendar_of(None, None),
                started_at,
                max(until, started_at),
                pause_intervals(pauses or []),
            )
        running = stopped_at is None
        # A running clock breaches at the deadline instant itself; a stopped clock met its
        # target if it stopped at or before the deadline.
        breached = (
            status_stored == ClockStatus.BREACHED
            or (running and until >= deadline)
            or (not running and until > deadline)
        )
        state: State
        if breached:
            state = "breached"
        elif not running:
            state = "compliant"
        elif critical_at is not None and until >= critical_at:
            state = "critical"
        elif warning_at is not None and until >= warning_at:
            state = "warning"
        else:
            state = "compliant"
        working = timedelta(seconds=elapsed)
        target = target_minutes * 60
        cancelled = cancelled or status_stored == ClockStatus.CANCELLED
        return cls(
            kind=kind,
            status_stored=status_stored,
            cancelled=cancelled,
            target_minutes=target_minutes,
            started_at=started_at,
            deadline=deadline,
            warning_at=warning_at,
            critical_at=critical_at,
            stopped_at=stopped_at,
            paused_at=paused_at,
            now=now,
            working_elapsed=working,
            running=running,
            until=until,
            remaining=deadline - until,
            breached=breached,
            met=None if running or cancelled else not breached,
            percent=round(100.0 * working.total_seconds() / target, 2) if target else 100.0,
            state=state,
            # Breached shows at the deadline even before the engine's pass records it.
            status=ClockStatus.BREACHED if breached else status_stored,
        )

    @property
    def elapsed(self) -> timedelta:
        """Working time used (calendar hours, pauses excluded)."""
        return self.working_elapsed

    def remaining_text(self) -> str:
        seconds = self.remaining.total_seconds()
        if seconds < 0:
            return f"overdue by {humanize(-seconds)}"
        return humanize(seconds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "status": self.status,
            "state": self.state,
            "target_minutes": self.target_minutes,
            "deadline": self.deadline,
            "stopped_at": self.stopped_at,
            "met": self.met,
            "elapsed_seconds": int(self.working_elapsed.total_seconds()),
            "remaining_seconds": int(self.remaining.total_seconds()),
            "percent_elapsed": self.percent,
        }


def level(state: State) -> int:
    return _LEVEL[state]


def worst_state(*clocks: ClockView) -> State:
    return max((c.state for c in clocks), key=level)


def sla_status(start: ClockView, resolve: ClockView, created_at: datetime) -> dict[str, Any]:
    """The `sla_status` block, with machine-readable fields beside the human ones."""
    # Each clock's remaining time is written out once (the current clock is one of them).
    start_text = start.remaining_text() if start.running else None
    if start.running and resolve.running:
        current, current_text = start, start_text
    else:
        current = resolve
        current_text = resolve.remaining_text() if resolve.running else None
    start_state, resolve_state = start.state, resolve.state
    result: dict[str, Any] = {
        "state": start_state if _LEVEL[start_state] >= _LEVEL[resolve_state] else resolve_state,
        "start_deadline": start.deadline,
        "start_met": start.met,
        "start_time_taken": humanize(start.stopped_at - created_at)
        if start.stopped_at and not start.cancelled
        else None,
        "start_time_remaining": start_text,
        "resolve_deadline": resolve.deadline,
        "resolve_met": resolve.met,
        "total_time": humanize(resolve.working_elapsed)
        if resolve.stopped_at and not resolve.cancelled
        else None,
        "time_remaining": current_text,
        "time_remaining_seconds": int(current.remaining.total_seconds())
        if current.running
        else None,
        "at_risk": (start.running and start_state in _AT_RISK)
        or (resolve.running and resolve_state in _AT_RISK),
        "breach_count": start.breached + resolve.breached,
        "clocks": [start.as_dict(), resolve.as_dict()],
    }
    return result
