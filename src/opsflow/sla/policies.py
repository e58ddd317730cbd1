"""SLA policies on the hot path: the policy model and which policy a task gets (pure).

A policy matches (task_type, priority, customer_tier), any of which may be ``*``, and gives
start/resolve minutes, thresholds (percent of the target *elapsed*; default 75 -> WARNING,
95 -> CRITICAL; breach at 100), a calendar, escalation and pause_on_blocked. Nothing here
does I/O or reads the clock. Reading, writing, validating and comparing whole
configurations is the ``opsflow.sla_config`` package's business.

Matching
--------
``match`` returns the active policy that matches and is the most specific: the one with the
most non-``*`` fields. Ties are broken by which fields are specific, in the order
priority > customer_tier > task_type (a policy for ``(*, CRITICAL, *)`` beats one for
``(INCIDENT, *, *)``; one for ``(*, CRITICAL, ENTERPRISE)`` beats ``(INCIDENT, CRITICAL, *)``),
then by name (smallest first). A valid configuration has at most one active policy per
selector, so the name rule only decides for unvalidated lists. ``resolve_targets`` falls back
to the built-in targets (``opsflow.sla.defaults``) when nothing matches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from opsflow.models.enums import Priority
from opsflow.sla.calendar import ALWAYS_NAME
from opsflow.sla.defaults import CRITICAL_PERCENT, WARNING_PERCENT, targets_for

WILDCARD: Final = "*"
DEFAULT_THRESHOLDS: Final[tuple[float, float]] = (WARNING_PERCENT, CRITICAL_PERCENT)
PRIORITY_CODES: Final[Mapping[str, Priority]] = {
    "P0": Priority.CRITICAL,
    "P1": Priority.HIGH,
    "P2": Priority.MEDIUM,
    "P3": Priority.LOW,
}


def _plain(value: object) -> object:
    """StrEnum members as plain strings (so reprs and YAML stay plain); anything else as is."""
    return str(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class PolicySpec:
    """One SLA policy. ``*`` in task_type, priority or customer_tier matches anything.

    ``thresholds`` are (warning, critical) percent of the target *elapsed*; ``calendar`` is a
    calendar name, ``None`` for ``24x7`` (the name ``"24x7"`` is normalised to ``None``);
    ``escalation`` is ``((level, minutes), ...)`` sorted by level. Construction never
    validates (see ``validate_config``); it only normalises: enum members to plain strings,
    sequences to tuples, integer thresholds to floats.
    """

    name: str
    task_type: str
    priority: str
    customer_tier: str
    start_minutes: int
    resolve_minutes: int
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    calendar: str | None = None
    pause_on_blocked: bool = False
    escalation: tuple[tuple[int, int], ...] = ()
    is_active: bool = True

    def __post_init__(self) -> None:
        for name in ("task_type", "priority", "customer_tier"):
            object.__setattr__(self, name, _plain(getattr(self, name)))
        object.__setattr__(self, "thresholds", float_tuple(self.thresholds))
        if self.calendar == ALWAYS_NAME:
            object.__setattr__(self, "calendar", None)
        object.__setattr__(self, "escalation", sorted_pairs(self.escalation))

    @property
    def selector(self) -> tuple[str, str, str]:
        return (self.task_type, self.priority, self.customer_tier)

    @property
    def specificity(self) -> int:
        """How many of task_type, priority, customer_tier are not ``*``."""
        return sum(value != WILDCARD for value in self.selector)

    def matches(self, task_type: str, priority: str, customer_tier: str) -> bool:
        """Whether the selector matches (``is_active`` is not considered)."""
        return (
            self.task_type in (WILDCARD, str(task_type))
            and self.priority in (WILDCARD, str(priority))
            and self.customer_tier in (WILDCARD, str(customer_tier))
        )


def float_tuple(values: object) -> Any:
    if not isinstance(values, tuple | list):
        return values
    return tuple(
        float(v) if isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**53 else v
        for v in values
    )


def sorted_pairs(values: object) -> Any:
    if not isinstance(values, tuple | list):
        return values
    items = tuple(tuple(v) if isinstance(v, list) else v for v in values)
    try:
        return tuple(sorted(items, key=lambda item: item[0]))
    except (TypeError, IndexError, KeyError):
        return items  # malformed: left for validate_config to report


def _precedence(spec: PolicySpec) -> tuple[int, int, int, int]:
    priority = spec.priority != WILDCARD
    tier = spec.customer_tier != WILDCARD
    task_type = spec.task_type != WILDCARD
    return (priority + tier + task_type, priority, tier, task_type)


def match(
    policies: Iterable[PolicySpec], task_type: str, priority: str, customer_tier: str
) -> PolicySpec | None:
    """The active policy for a task: most non-``*`` fields, then priority > customer_tier >
    task_type specificity, then the smallest name. ``None`` when no active policy matches."""
    best: PolicySpec | None = None
    best_key: tuple[int, int, int, int] = (-1, 0, 0, 0)
    for spec in policies:
        if not spec.is_active or not spec.matches(task_type, priority, customer_tier):
            continue
        key = _precedence(spec)
        if best is None or key > best_key or (key == best_key and spec.name < best.name):
            best, best_key = spec, key
    return best


class ResolvedTargets(NamedTuple):
    start_minutes: int
    resolve_minutes: int
    thresholds: tuple[float, ...]
    source: str  # "policy:<name>" or "default"


def resolve_targets(
    policies: Iterable[PolicySpec], task_type: str, priority: str, customer_tier: str
) -> ResolvedTargets:
    """The matching policy's targets, or the built-in defaults for the priority (``"default"``).

    Raises ``ValueError`` for an unknown priority when no policy matches.
    """
    spec = match(policies, task_type, priority, customer_tier)
    if spec is not None:
        return ResolvedTargets(
            spec.start_minutes, spec.resolve_minutes, spec.thresholds, f"policy:{spec.name}"
        )
    start, resolve = targets_for(Priority(str(priority)))
    return ResolvedTargets(start, resolve, DEFAULT_THRESHOLDS, "default")
