"""Built-in SLA targets when nothing else is given, and the default thresholds."""

from __future__ import annotations

from opsflow.models.enums import Priority

# priority -> (start/response minutes, resolve minutes)
PRIORITY_DEFAULTS: dict[Priority, tuple[int, int]] = {
    Priority.CRITICAL: (60, 240),
    Priority.HIGH: (240, 1440),
    Priority.MEDIUM: (480, 4320),
    Priority.LOW: (1440, 10080),
}

WARNING_PERCENT = 75.0
CRITICAL_PERCENT = 95.0
MAX_SLA_MINUTES = 525_600  # one year


def targets_for(priority: Priority) -> tuple[int, int]:
    return PRIORITY_DEFAULTS[priority]


def fill_targets(
    defaults: tuple[int, int], start: int | None, resolve: int | None
) -> tuple[int, int]:
    """Targets for a task: the given ones, the defaults (policy or priority) for the others.

    A defaulted target never contradicts a given one: a defaulted response target is at
    most the given resolve target, a defaulted resolve target at least the given response
    target. Two given targets with start > resolve are the caller's error (ValueError).
    """
    default_start, default_resolve = defaults
    if start is not None and resolve is not None and start > resolve:
        raise ValueError("start_sla_minutes must not exceed resolve_sla_minutes")
    if start is None:
        start = default_start if resolve is None else min(default_start, resolve)
    if resolve is None:
        resolve = max(default_resolve, start)
    return start, resolve
