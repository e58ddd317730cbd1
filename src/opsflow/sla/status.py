"""The `sla_status` shown on tasks (pure): where each clock stands at a given instant.

Until the SLA engine keeps clocks of its own, the two clocks are derived from the task:
START runs from creation to the first acknowledgement or start, RESOLVE from creation to
completion; both stop on cancellation. Deadlines are stored on the task and shifted when
targets change or a completed task is reopened (the RESOLVE clock continues).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from opsflow.kit.durations import humanize
from opsflow.sla.defaults import CRITICAL_PERCENT, WARNING_PERCENT

State = Literal["compliant", "warning", "critical", "breached"]
_SEVERITY: dict[State, int] = {"compliant": 0, "warning": 1, "critical": 2, "breached": 3}


@dataclass(frozen=True)
class ClockView:
    kind: Literal["START", "RESOLVE"]
    target_minutes: int
    deadline: datetime
    stopped_at: datetime | None
    cancelled: bool
    now: datetime
    paused_at: datetime | None = None

    @property
    def running(self) -> bool:
        return self.stopped_at is None

    @property
    def until(self) -> datetime:
        # A paused clock stands still at the instant it was paused.
        return self.stopped_at or self.paused_at or self.now

    @property
    def remaining(self) -> timedelta:
        return self.deadline - self.until

    @property
    def elapsed(self) -> timedelta:
        return timedelta(minutes=self.target_minutes) - self.remaining

    @property
    def percent(self) -> float:
        target = self.target_minutes * 60
        return round(100.0 * self.elapsed.total_seconds() / target, 2) if target else 100.0

    @property
    def breached(self) -> bool:
        # A running clock breaches at 100 % (the deadline instant itself); a stopped clock
        # met its target if it stopped at or before the deadline.
        if self.running:
            return self.until >= self.deadline
        return self.until > self.deadline

    @property
    def met(self) -> bool | None:
        if self.running or self.cancelled:
            return None
        return not self.breached

    @property
    def state(self) -> State:
        if self.breached:
            return "breached"
        if not self.running:
            return "compliant"
        # Compare unrounded seconds: `percent` is rounded for display only.
        elapsed = self.elapsed.total_seconds()
        target = self.target_minutes * 60
        if elapsed * 100 >= target * CRITICAL_PERCENT:
            return "critical"
        if elapsed * 100 >= target * WARNING_PERCENT:
            return "warning"
        return "compliant"

    @property
    def status(self) -> str:
        # A breached clock keeps BREACHED when it later stops, even by cancellation.
        if self.breached:
            return "BREACHED"
        if self.cancelled:
            return "CANCELLED"
        if self.running and self.paused_at is not None:
            return "PAUSED"
        return "ACTIVE" if self.running else "MET"

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
            "elapsed_seconds": int(self.elapsed.total_seconds()),
            "remaining_seconds": int(self.remaining.total_seconds()),
            "percent_elapsed": self.percent,
        }


def clocks_for(
    *,
    created_at: datetime,
    start_sla_minutes: int,
    resolve_sla_minutes: int,
    start_deadline: datetime,
    resolve_deadline: datetime,
    acknowledged_at: datetime | None,
    started_at: datetime | None,
    completed_at: datetime | None,
    cancelled_at: datetime | None,
    now: datetime,
    paused_at: datetime | None = None,
) -> tuple[ClockView, ClockView]:
    responded = min((t for t in (acknowledged_at, started_at) if t is not None), default=None)
    start_stop = responded or cancelled_at
    resolve_stop = completed_at or cancelled_at
    start = ClockView(
        "START",
        start_sla_minutes,
        start_deadline,
        start_stop,
        cancelled=responded is None and cancelled_at is not None,
        now=now,
        paused_at=paused_at,
    )
    resolve = ClockView(
        "RESOLVE",
        resolve_sla_minutes,
        resolve_deadline,
        resolve_stop,
        cancelled=completed_at is None and cancelled_at is not None,
        now=now,
        paused_at=paused_at,
    )
    return start, resolve


def worst_state(*clocks: ClockView) -> State:
    return max((c.state for c in clocks), key=lambda s: _SEVERITY[s])


def sla_status(start: ClockView, resolve: ClockView, created_at: datetime) -> dict[str, Any]:
    """The seed 000 `sla_status` block, with machine-readable fields beside the human ones."""
    current = start if start.running and resolve.running else resolve
    state = worst_state(start, resolve)
    result: dict[str, Any] = {
        "state": state,
        "start_deadline": start.deadline,
        "start_met": start.met,
        "start_time_taken": humanize(start.stopped_at - created_at)
        if start.stopped_at and not start.cancelled
        else None,
        "start_time_remaining": start.remaining_text() if start.running else None,
        "resolve_deadline": resolve.deadline,
        "resolve_met": resolve.met,
        "total_time": humanize(resolve.elapsed)
        if resolve.stopped_at and not resolve.cancelled
        else None,
        "time_remaining": current.remaining_text() if current.running else None,
        "time_remaining_seconds": int(current.remaining.total_seconds())
        if current.running
        else None,
        "at_risk": any(c.running and c.state in ("warning", "critical") for c in (start, resolve)),
        "breach_count": sum(1 for c in (start, resolve) if c.breached),
        "clocks": [start.as_dict(), resolve.as_dict()],
    }
    return result
