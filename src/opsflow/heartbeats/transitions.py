"""What the engine and the signals both do to a monitor: re-plan its next check."""

from __future__ import annotations

from collections.abc import Sequence

from opsflow.heartbeats.schedule import next_check
from opsflow.models.heartbeat import HeartbeatMonitor, HeartbeatRun


def replan(monitor: HeartbeatMonitor, runs: Sequence[HeartbeatRun]) -> None:
    deadlines = [run.deadline_at for run in runs if run.deadline_at is not None]
    monitor.next_check_at = next_check(
        stored=monitor.state,
        paused=monitor.paused,
        next_due_at=monitor.next_due_at,
        grace_seconds=monitor.grace_seconds,
        run_deadline=min(deadlines, default=None),
    )
