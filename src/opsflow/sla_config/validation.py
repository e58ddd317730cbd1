"""The rules of a valid SLA configuration (pure), and ``validate_config`` for one built in
code. The YAML reader (``sla_config.yaml_format``) applies the same rules while parsing.

Rules (each violation is reported, all of them at once, as a ``PolicyConfigError`` entry
``{"path": "sla_targets.ENTERPRISE.P0.response_minutes", "message": ...}``; ``""`` is the
document itself; paths use the keys as written):

* minutes are whole numbers, 1 .. 525600 (a year); response <= resolution;
* thresholds lie strictly between 0 and 100 with at most 4 decimal places, warning before
  critical (warning remaining > critical remaining; warning elapsed < critical elapsed);
* escalation levels are ``LEVEL_n`` with n >= 1, each once, and their minutes do not decrease
  as the level rises; they need not have an ``escalation_levels`` label (the format's own
  example uses LEVEL_3 without one); labels are non-empty printable text of at most 200
  characters, levels are integers >= 0;
* policy names are unique, and at most one *active* policy has a given selector
  (task_type, priority, customer_tier) — so matching never depends on names;
* a calendar referenced must be defined in the file (or passed as ``known_calendars``);
  a calendar needs at least one working interval; a day's intervals may not overlap;
* duplicate mapping keys (also ``ENTERPRISE`` next to ``enterprise``), unknown keys, YAML
  syntax errors (with line and column), a document that is not a mapping, and documents over
  1 MiB are errors. No input makes ``parse_sla_config`` raise anything but
  ``PolicyConfigError``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Final

from opsflow.models.enums import CustomerTier, Priority, TaskType
from opsflow.sla.calendar import ALWAYS_NAME, BusinessCalendar
from opsflow.sla.calendar_format import WEEKDAYS
from opsflow.sla.config_errors import (
    PolicyConfigError,
    Problems,
    describe,
    is_int,
    join,
    name_problem,
    short,
)
from opsflow.sla.defaults import MAX_SLA_MINUTES
from opsflow.sla.policies import WILDCARD, PolicySpec
from opsflow.sla_config.model import SlaConfig

THRESHOLD_DECIMALS: Final = 4
MAX_LABEL_LENGTH: Final = 200
TASK_TYPES: Final = frozenset(t.value for t in TaskType)
PRIORITIES: Final = frozenset(p.value for p in Priority)
TIERS: Final = frozenset(t.value for t in CustomerTier)


def minutes_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be a whole number of minutes, got {describe(value)}"
    if value <= 0:
        return f"must be a positive number of minutes, got {short(value)}"
    if value > MAX_SLA_MINUTES:
        return f"must be at most {MAX_SLA_MINUTES} minutes (one year), got {short(value)}"
    return None


def percent_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a percentage (a number), got {describe(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {short(value)}"
    if not 0 < value < 100:
        return f"must be strictly between 0 and 100, got {short(value)}"
    if round(value, THRESHOLD_DECIMALS) != value:
        return f"must have at most {THRESHOLD_DECIMALS} decimal places, got {short(value)}"
    return None


def label_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"must be a text label, got {describe(value)}"
    if not value or len(value) > MAX_LABEL_LENGTH or not value.isprintable():
        return f"must be 1-{MAX_LABEL_LENGTH} printable characters on one line"
    return None


def elapsed_pair_problems(values: object) -> list[tuple[str, str]]:
    """Problems with a (warning, critical) percent-elapsed pair: ``(path suffix, message)``."""
    if not isinstance(values, tuple | list) or len(values) != 2:
        return [("", "must be a list of two percentages elapsed: [warning, critical]")]
    problems: list[tuple[str, str]] = []
    for index, value in enumerate(values):
        problem = percent_problem(value)
        if problem:
            problems.append((f"[{index}]", problem))
    if not problems and not values[0] < values[1]:
        problems.append(
            (
                "",
                f"warning ({short(values[0])}% elapsed) must come before critical "
                f"({short(values[1])}% elapsed)",
            )
        )
    return problems


def escalation_order_problems(pairs: Sequence[tuple[int, int]]) -> list[tuple[int, str]]:
    """For (level, minutes) pairs sorted by level: ``(index, message)`` of each problem."""
    problems: list[tuple[int, str]] = []
    for index in range(1, len(pairs)):
        (prev_level, prev_minutes), (level, minutes) = pairs[index - 1], pairs[index]
        if level == prev_level:
            problems.append((index, f"escalation level {level} is given more than once"))
        elif minutes < prev_minutes:
            problems.append(
                (
                    index,
                    f"LEVEL_{level} ({minutes} min) must not come before LEVEL_{prev_level} "
                    f"({prev_minutes} min)",
                )
            )
    return problems


def selector_clash(spec: PolicySpec, other: str) -> str:
    task_type, priority, tier = spec.selector
    return (
        f"{other} already applies to task_type={task_type}, priority={priority}, "
        f"customer_tier={tier}; at most one active policy per selector"
    )


def _validate_calendars(config: SlaConfig, errors: Problems) -> set[str]:
    names: set[str] = set()
    for index, calendar in enumerate(config.calendars):
        if not isinstance(calendar, BusinessCalendar):
            errors.add(
                f"calendars[{index}]", f"must be a BusinessCalendar, got {describe(calendar)}"
            )
            continue
        path = f"calendars.{short(calendar.name)}"
        problem = name_problem(calendar.name, "calendar")
        if problem:
            errors.add(path, problem)
        elif calendar.name.lower() == ALWAYS_NAME:
            errors.add(path, f"'{ALWAYS_NAME}' is built in and cannot be redefined")
        if calendar.name in names:
            errors.add(path, f"calendar name '{short(calendar.name)}' is used more than once")
        names.add(calendar.name)
        if not calendar.has_working_time:
            errors.add(join(path, "hours"), "a calendar needs at least one working interval")
        for weekday, intervals in calendar.hours.items():
            for start, end in intervals:
                if start.microsecond or end.microsecond:
                    errors.add(
                        join(path, f"hours.{WEEKDAYS[weekday]}"),
                        "interval bounds must be whole seconds",
                    )
    return names


def _validate_policy(
    spec: object, index: int, calendars: Collection[str], errors: Problems
) -> PolicySpec | None:
    if not isinstance(spec, PolicySpec):
        errors.add(f"policies[{index}]", f"must be a PolicySpec, got {describe(spec)}")
        return None
    path = f"policies.{short(spec.name)}" if isinstance(spec.name, str) else f"policies[{index}]"
    problem = name_problem(spec.name, "policy")
    if problem:
        errors.add(path, problem)
    for key, allowed in (
        ("task_type", TASK_TYPES),
        ("priority", PRIORITIES),
        ("customer_tier", TIERS),
    ):
        value = getattr(spec, key)
        if value != WILDCARD and value not in allowed:
            choices = ", ".join([*sorted(allowed), WILDCARD])
            errors.add(join(path, key), f"must be one of {choices}, got {describe(value)}")
    minutes_ok = True
    for key in ("start_minutes", "resolve_minutes"):
        problem = minutes_problem(getattr(spec, key))
        if problem:
            errors.add(join(path, key), problem)
            minutes_ok = False
    if minutes_ok and spec.start_minutes > spec.resolve_minutes:
        errors.add(
            join(path, "start_minutes"),
            f"start_minutes ({spec.start_minutes}) must not exceed resolve_minutes "
            f"({spec.resolve_minutes})",
        )
    for suffix, message in elapsed_pair_problems(spec.thresholds):
        errors.add(join(path, "thresholds") + suffix, message)
    if spec.calendar is not None and spec.calendar not in calendars:
        errors.add(join(path, "calendar"), f"unknown calendar {describe(spec.calendar)}")
    for key in ("pause_on_blocked", "is_active"):
        if not isinstance(getattr(spec, key), bool):
            errors.add(join(path, key), "must be true or false")
    _validate_escalation(spec.escalation, join(path, "escalation"), errors)
    return spec


def _validate_escalation(value: object, path: str, errors: Problems) -> None:
    if not isinstance(value, tuple):
        errors.add(path, "must be a tuple of (level, minutes) pairs")
        return
    pairs: list[tuple[int, int]] = []
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        if not isinstance(item, tuple) or len(item) != 2:
            errors.add(item_path, "must be a (level, minutes) pair")
            continue
        level, minutes = item
        if not is_int(level) or level < 1:
            errors.add(item_path, f"the level must be a whole number >= 1, got {describe(level)}")
            continue
        problem = minutes_problem(minutes)
        if problem:
            errors.add(item_path, problem)
            continue
        pairs.append((level, minutes))
    if len(pairs) == len(value):
        for index, message in escalation_order_problems(pairs):
            errors.add(f"{path}[{index}]", message)


def _validate_levels(value: object, errors: Problems) -> None:
    path = "escalation_levels"
    if not isinstance(value, tuple):
        errors.add(path, "must be a tuple of (level, label) pairs")
        return
    seen: set[int] = set()
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        if not isinstance(item, tuple) or len(item) != 2:
            errors.add(item_path, "must be a (level, label) pair")
            continue
        level, label = item
        if not is_int(level) or level < 0:
            errors.add(item_path, f"the level must be a whole number >= 0, got {describe(level)}")
            continue
        if level in seen:
            errors.add(item_path, f"level {short(level)} is given more than once")
        seen.add(level)
        problem = label_problem(label)
        if problem:
            errors.add(item_path, problem)


def validate_config(config: SlaConfig, *, known_calendars: Collection[str] = ()) -> None:
    """Check a configuration built in code by the rules the YAML format enforces.

    Paths name fields of ``SlaConfig`` (``policies.<name>.start_minutes``). Raises
    ``PolicyConfigError`` listing every problem.
    """
    if not isinstance(config, SlaConfig):
        raise PolicyConfigError([{"path": "", "message": "must be an SlaConfig"}])
    errors = Problems()
    calendars = _validate_calendars(config, errors) | {
        name for name in known_calendars if isinstance(name, str)
    }
    for suffix, message in elapsed_pair_problems(config.thresholds):
        errors.add("thresholds" + suffix, message)
    _validate_levels(config.escalation_levels, errors)
    if config.default_calendar is not None and config.default_calendar not in calendars:
        errors.add("default_calendar", f"unknown calendar {describe(config.default_calendar)}")
    if not isinstance(config.default_pause_on_blocked, bool):
        errors.add("default_pause_on_blocked", "must be true or false")
    names: set[str] = set()
    selectors: dict[tuple[str, str, str], str] = {}
    for index, item in enumerate(config.policies):
        spec = _validate_policy(item, index, calendars, errors)
        if spec is None:
            continue
        path = f"policies.{short(spec.name)}"
        if spec.name in names:
            errors.add(path, f"policy name '{short(spec.name)}' is used more than once")
        names.add(spec.name)
        if spec.is_active is True:
            try:
                other = selectors.get(spec.selector)
            except TypeError:  # an unhashable selector field, reported above
                continue
            if other is not None:
                errors.add(path, selector_clash(spec, other))
            else:
                selectors[spec.selector] = path
    if errors:
        raise PolicyConfigError(errors.items)
