"""Built-in SLA targets when nothing else is given (seed 001), and the default thresholds."""

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
