"""Human-readable durations as the API shows them ("1 hour 55 minutes")."""

from __future__ import annotations

from datetime import timedelta

_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60))


def humanize(delta: timedelta | float, *, max_units: int = 2) -> str:
    """Render a duration with the largest units first, rounded down to the minute.

    Under a minute gives ``"less than a minute"``; negative durations are rendered by
    magnitude (callers decide whether to say "overdue").
    """
    seconds = int(abs(delta.total_seconds() if isinstance(delta, timedelta) else delta))
    if seconds < 60:
        return "less than a minute" if seconds else "0 minutes"
    parts: list[str] = []
    for name, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}{'' if count == 1 else 's'}")
        elif parts:
            # Keep units adjacent: "1 day 3 minutes" would hide that hours were skipped.
            break
        if len(parts) == max_units:
            break
    return " ".join(parts)
