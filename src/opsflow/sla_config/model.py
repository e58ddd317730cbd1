"""A whole SLA configuration as one value (pure): what a ``sla_config.yaml`` says, what the
database holds, what a change is validated as before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from opsflow.sla.calendar import ALWAYS_NAME, BusinessCalendar
from opsflow.sla.policies import DEFAULT_THRESHOLDS, PolicySpec, float_tuple, sorted_pairs


def _name_of(item: object) -> str:
    name = getattr(item, "name", "")
    return name if isinstance(name, str) else ""


@dataclass(frozen=True)
class SlaConfig:
    """A whole ``sla_config.yaml``: policies, calendars and the file-wide settings.

    ``thresholds`` is the YAML file's ``alert_thresholds`` as percent *elapsed*; policies of
    ``sla_targets`` use it. ``default_calendar`` / ``default_pause_on_blocked`` are the
    extension block's defaults. Policies and calendars are kept sorted by name and
    ``escalation_levels`` by level, so two configurations with the same content are equal.
    """

    policies: tuple[PolicySpec, ...] = ()
    calendars: tuple[BusinessCalendar, ...] = ()
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    escalation_levels: tuple[tuple[int, str], ...] = ()
    default_calendar: str | None = None
    default_pause_on_blocked: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "policies", tuple(sorted(self.policies, key=_name_of)))
        object.__setattr__(self, "calendars", tuple(sorted(self.calendars, key=_name_of)))
        object.__setattr__(self, "thresholds", float_tuple(self.thresholds))
        object.__setattr__(self, "escalation_levels", sorted_pairs(self.escalation_levels))
        if self.default_calendar == ALWAYS_NAME:
            object.__setattr__(self, "default_calendar", None)

    def policy(self, name: str) -> PolicySpec | None:
        return next((p for p in self.policies if p.name == name), None)

    def calendar(self, name: str | None) -> BusinessCalendar | None:
        """The calendar called ``name``; ``None``/``"24x7"`` give ``BusinessCalendar.always()``;
        ``None`` when no such calendar is defined here."""
        if name is None or name == ALWAYS_NAME:
            return BusinessCalendar.always()
        return next((c for c in self.calendars if c.name == name), None)
