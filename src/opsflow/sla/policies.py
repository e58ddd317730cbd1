"""SLA policies: matching, seed 002 ``sla_config.yaml`` import/export, validation, diffs (pure).

SPEC §2 "SLA policy": a policy matches (task_type, priority, customer_tier), any of which may
be ``*``, and gives start/resolve minutes, thresholds (percent of the target *elapsed*; default
75 -> WARNING, 95 -> CRITICAL; breach at 100), a calendar, escalation and pause_on_blocked.
Nothing here does I/O or reads the clock.

Matching
--------
``match`` returns the active policy that matches and is the most specific: the one with the
most non-``*`` fields. Ties are broken by which fields are specific, in the order
priority > customer_tier > task_type (a policy for ``(*, CRITICAL, *)`` beats one for
``(INCIDENT, *, *)``; one for ``(*, CRITICAL, ENTERPRISE)`` beats ``(INCIDENT, CRITICAL, *)``),
then by name (smallest first). A valid configuration has at most one active policy per
selector, so the name rule only decides for unvalidated lists. ``resolve_targets`` falls back
to seed 001's built-in targets (``opsflow.sla.defaults``) when nothing matches.

The YAML format
---------------
Seed 002's ``sla_config.yaml`` is accepted exactly::

    sla_targets:                     # tier (any case) -> priority -> targets
      ENTERPRISE:
        P0:                          # P0 CRITICAL, P1 HIGH, P2 MEDIUM, P3 LOW (any case;
          response_minutes: 15       #   CRITICAL/HIGH/MEDIUM/LOW are accepted too)
          resolution_minutes: 60
          escalation:                # optional: LEVEL_n -> minutes, kept verbatim
            LEVEL_1: 10
    alert_thresholds:                # percent of the time *remaining* (seed 002)
      warning: 15                    # -> 85.0 % elapsed
      critical: 5                    # -> 95.0 % elapsed
    escalation_levels:               # level number -> label, kept verbatim
      0: "No escalation"

Each ``sla_targets`` entry becomes a policy named ``<tier>-p<n>`` (``enterprise-p0``) with
task_type ``*``, the file's ``alert_thresholds`` converted to percent elapsed
(``100 - remaining``), and the defaults of the extension block below. A missing
``alert_thresholds`` (or one of its keys) means OpsFlow's defaults (25 % and 5 % remaining).
Top-level sections may be left empty (``null``).

OpsFlow extension block (optional; written by ``dump_sla_config`` only when needed)::

    opsflow:
      version: 1                     # optional; only 1 is known
      defaults:                      # apply to every policy of this file
        calendar: business-hours     # a calendar name, or 24x7 / null (the default)
        pause_on_blocked: false
      calendars:
        business-hours:              # name: letters, digits, "_", ".", "-"; 24x7 is reserved
          timezone: Europe/Paris     # IANA time zone
          hours:                     # weekday (mon..sun or monday..sunday) -> intervals
            mon: ["09:00-17:00"]     # HH:MM[:SS]-HH:MM[:SS]; end 24:00 (or 00:00) = midnight
            tue: ["09:00-12:00", "13:00-17:00"]
          holidays: [2026-12-25]     # ISO dates (local), no working time
      policies:
        incident-critical:           # the policy name
          task_type: INCIDENT        # TASK | INCIDENT | "*"      (default "*")
          priority: CRITICAL         # LOW..CRITICAL, P0..P3, "*" (default "*")
          customer_tier: "*"         # ENTERPRISE..BASIC, "*"      (default "*")
          response_minutes: 10       # required
          resolution_minutes: 60     # required
          thresholds: [75, 95]       # percent *elapsed* [warning, critical]
                                     #   (default: the file's alert_thresholds)
          calendar: business-hours   # default: defaults.calendar
          pause_on_blocked: true     # default: defaults.pause_on_blocked
          escalation: {LEVEL_1: 5}   # as in sla_targets
          is_active: true            # default true

Rules (each violation is reported, all of them at once, as a ``PolicyConfigError`` entry
``{"path": "sla_targets.ENTERPRISE.P0.response_minutes", "message": ...}``; ``""`` is the
document itself; paths use the keys as written):

* minutes are whole numbers, 1 .. 525600 (a year); response <= resolution;
* thresholds lie strictly between 0 and 100 with at most 4 decimal places, warning before
  critical (warning remaining > critical remaining; warning elapsed < critical elapsed);
* escalation levels are ``LEVEL_n`` with n >= 1, each once, and their minutes do not decrease
  as the level rises; they need not have an ``escalation_levels`` label (seed 002's own
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

``dump_sla_config`` writes seed 002's format; a policy goes in ``sla_targets`` when seed 002
can say everything about it (task_type ``*``, concrete priority and tier, the canonical
name, the file's thresholds and defaults, active), otherwise in ``opsflow.policies`` with
every field spelled out. ``parse_sla_config(dump_sla_config(c)) == c`` for every valid ``c``
(``SlaConfig`` keeps policies and calendars sorted by name, so order does not matter).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from opsflow.models.enums import CustomerTier, Priority, TaskType
from opsflow.sla.calendar import ALWAYS_NAME, BusinessCalendar
from opsflow.sla.defaults import CRITICAL_PERCENT, MAX_SLA_MINUTES, WARNING_PERCENT, targets_for

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MAX_DOCUMENT_BYTES",
    "PRIORITY_CODES",
    "WILDCARD",
    "PolicyConfigError",
    "PolicySpec",
    "ResolvedTargets",
    "SlaConfig",
    "calendar_from_dict",
    "calendar_to_dict",
    "diff_configs",
    "dump_sla_config",
    "match",
    "parse_sla_config",
    "policy_to_dict",
    "resolve_targets",
    "seed_policy_name",
    "validate_config",
]

WILDCARD: Final = "*"
MAX_DOCUMENT_BYTES: Final = 1024 * 1024
DEFAULT_THRESHOLDS: Final[tuple[float, float]] = (WARNING_PERCENT, CRITICAL_PERCENT)
PRIORITY_CODES: Final[Mapping[str, Priority]] = {
    "P0": Priority.CRITICAL,
    "P1": Priority.HIGH,
    "P2": Priority.MEDIUM,
    "P3": Priority.LOW,
}
EXTENSION_KEY: Final = "opsflow"
EXTENSION_VERSION: Final = 1
MAX_ERRORS: Final = 200  # entries kept in a PolicyConfigError (plus one "and N more")
THRESHOLD_DECIMALS: Final = 4
MAX_LABEL_LENGTH: Final = 200

_CODE_OF: Final = {priority: code for code, priority in PRIORITY_CODES.items()}
_TASK_TYPES: Final = frozenset(t.value for t in TaskType)
_PRIORITIES: Final = frozenset(p.value for p in Priority)
_TIERS: Final = frozenset(t.value for t in CustomerTier)
_WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_OF: Final = {
    **{short: index for index, short in enumerate(_WEEKDAYS)},
    **{
        long: index
        for index, long in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
}
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_LEVEL_RE: Final = re.compile(r"level_([0-9]{1,6})", re.IGNORECASE)
_CLOCK = r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?"
_INTERVAL_RE: Final = re.compile(rf"\s*{_CLOCK}\s*-\s*{_CLOCK}\s*")
_DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DAY: Final = timedelta(days=1)
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"

_TOP_KEYS: Final = ("sla_targets", "alert_thresholds", "escalation_levels", EXTENSION_KEY)
_SEED_ENTRY_KEYS: Final = ("response_minutes", "resolution_minutes", "escalation")
_EXTENSION_KEYS: Final = ("version", "defaults", "calendars", "policies")
_DEFAULTS_KEYS: Final = ("calendar", "pause_on_blocked")
_CALENDAR_KEYS: Final = ("timezone", "hours", "holidays")
_POLICY_KEYS: Final = (
    "task_type",
    "priority",
    "customer_tier",
    "response_minutes",
    "resolution_minutes",
    "thresholds",
    "calendar",
    "pause_on_blocked",
    "escalation",
    "is_active",
)

ErrorEntry = dict[str, str]


class PolicyConfigError(ValueError):
    """An invalid SLA configuration. ``errors`` lists every problem as ``{path, message}``."""

    def __init__(self, errors: Iterable[Mapping[str, str]]) -> None:
        entries = [{"path": str(e["path"]), "message": str(e["message"])} for e in errors]
        if not entries:
            entries = [{"path": "", "message": "invalid SLA configuration"}]
        if len(entries) > MAX_ERRORS:
            more = len(entries) - MAX_ERRORS
            entries = [*entries[:MAX_ERRORS], {"path": "", "message": f"... and {more} more"}]
        self.errors: list[ErrorEntry] = entries
        shown = "; ".join(
            f"{e['path']}: {e['message']}" if e["path"] else e["message"] for e in entries[:5]
        )
        count = len(entries)
        super().__init__(
            f"invalid SLA configuration ({count} error{'s' if count != 1 else ''}): {shown}"
        )


# --- the model ------------------------------------------------------------------------------


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
        object.__setattr__(self, "thresholds", _float_tuple(self.thresholds))
        if self.calendar == ALWAYS_NAME:
            object.__setattr__(self, "calendar", None)
        object.__setattr__(self, "escalation", _sorted_pairs(self.escalation))

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


def _float_tuple(values: object) -> Any:
    if not isinstance(values, tuple | list):
        return values
    return tuple(
        float(v) if isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**53 else v
        for v in values
    )


def _sorted_pairs(values: object) -> Any:
    if not isinstance(values, tuple | list):
        return values
    items = tuple(tuple(v) if isinstance(v, list) else v for v in values)
    try:
        return tuple(sorted(items, key=lambda item: item[0]))
    except (TypeError, IndexError, KeyError):
        return items  # malformed: left for validate_config to report


def _name_of(item: object) -> str:
    name = getattr(item, "name", "")
    return name if isinstance(name, str) else ""


@dataclass(frozen=True)
class SlaConfig:
    """A whole ``sla_config.yaml``: policies, calendars and the file-wide settings.

    ``thresholds`` is seed 002's ``alert_thresholds`` as percent *elapsed*; policies of
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
        object.__setattr__(self, "thresholds", _float_tuple(self.thresholds))
        object.__setattr__(self, "escalation_levels", _sorted_pairs(self.escalation_levels))
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


# --- matching -------------------------------------------------------------------------------


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
    """The matching policy's targets, or seed 001's defaults for the priority (``"default"``).

    Raises ``ValueError`` for an unknown priority when no policy matches.
    """
    spec = match(policies, task_type, priority, customer_tier)
    if spec is not None:
        return ResolvedTargets(
            spec.start_minutes, spec.resolve_minutes, spec.thresholds, f"policy:{spec.name}"
        )
    start, resolve = targets_for(Priority(str(priority)))
    return ResolvedTargets(start, resolve, DEFAULT_THRESHOLDS, "default")


def seed_policy_name(customer_tier: str, priority: str) -> str:
    """The name a seed 002 ``sla_targets`` entry gets: ``enterprise-p0``."""
    return f"{str(customer_tier).lower()}-{_CODE_OF[Priority(str(priority))].lower()}"


# --- small helpers shared by parsing and validation -----------------------------------------


class _Errors:
    def __init__(self) -> None:
        self.items: list[ErrorEntry] = []

    def add(self, path: str, message: str) -> None:
        self.items.append({"path": path, "message": message})

    def __len__(self) -> int:
        return len(self.items)


def _short(value: object, limit: int = 60) -> str:
    """A short, printable rendering of a scalar (never huge, never raising)."""
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, bool):
        text = {None: "null", True: "true", False: "false"}[value]
    elif isinstance(value, int):
        text = str(value) if value.bit_length() <= 200 else "<a very large integer>"
    elif isinstance(value, float | date):
        text = str(value)
    else:
        text = f"<{type(value).__name__}>"
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _describe(value: object) -> str:
    if value is None or isinstance(value, bool):
        return _short(value)
    if isinstance(value, int | float):
        return f"the number {_short(value)}"
    if isinstance(value, str):
        return f"the string '{_short(value)}'"
    if isinstance(value, datetime):
        return "a timestamp"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a value of type {type(value).__name__}"


def _join(path: str, key: object) -> str:
    text = _short(key)
    return f"{path}.{text}" if path else text


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _minutes_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be a whole number of minutes, got {_describe(value)}"
    if value <= 0:
        return f"must be a positive number of minutes, got {_short(value)}"
    if value > MAX_SLA_MINUTES:
        return f"must be at most {MAX_SLA_MINUTES} minutes (one year), got {_short(value)}"
    return None


def _percent_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a percentage (a number), got {_describe(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {_short(value)}"
    if not 0 < value < 100:
        return f"must be strictly between 0 and 100, got {_short(value)}"
    if round(value, THRESHOLD_DECIMALS) != value:
        return f"must have at most {THRESHOLD_DECIMALS} decimal places, got {_short(value)}"
    return None


def _name_problem(value: object, what: str) -> str | None:
    if not isinstance(value, str):
        return f"{what} name must be a string (quote it), got {_describe(value)}"
    if not _NAME_RE.fullmatch(value):
        return (
            f"{what} name must be 1-100 letters, digits, '_', '.' or '-', starting with a "
            f"letter or digit, got '{_short(value)}'"
        )
    return None


def _label_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"must be a text label, got {_describe(value)}"
    if not value or len(value) > MAX_LABEL_LENGTH or not value.isprintable():
        return f"must be 1-{MAX_LABEL_LENGTH} printable characters on one line"
    return None


def _elapsed_pair_problems(values: object) -> list[tuple[str, str]]:
    """Problems with a (warning, critical) percent-elapsed pair: ``(path suffix, message)``."""
    if not isinstance(values, tuple | list) or len(values) != 2:
        return [("", "must be a list of two percentages elapsed: [warning, critical]")]
    problems: list[tuple[str, str]] = []
    for index, value in enumerate(values):
        problem = _percent_problem(value)
        if problem:
            problems.append((f"[{index}]", problem))
    if not problems and not values[0] < values[1]:
        problems.append(
            (
                "",
                f"warning ({_short(values[0])}% elapsed) must come before critical "
                f"({_short(values[1])}% elapsed)",
            )
        )
    return problems


def _escalation_order_problems(pairs: Sequence[tuple[int, int]]) -> list[tuple[int, str]]:
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


def _clock_text(value: time, *, end: bool) -> str:
    if end and value == time(0):
        return "24:00"
    text = f"{value.hour:02d}:{value.minute:02d}"
    return f"{text}:{value.second:02d}" if value.second else text


def _offset(value: time, *, end: bool) -> timedelta:
    if end and value == time(0):
        return _DAY
    return timedelta(hours=value.hour, minutes=value.minute, seconds=value.second)


def _format_interval(interval: tuple[time, time]) -> str:
    return f"{_clock_text(interval[0], end=False)}-{_clock_text(interval[1], end=True)}"


# --- YAML loading ---------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys in a mapping (PyYAML keeps the last one)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue
            if duplicate:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key '{_short(key)}'",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def _load(text: object) -> object:
    if not isinstance(text, str):
        raise PolicyConfigError([{"path": "", "message": "the document must be text"}])
    if (
        len(text) > MAX_DOCUMENT_BYTES
        or len(text.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES
    ):
        raise PolicyConfigError(
            [{"path": "", "message": f"the document is larger than {MAX_DOCUMENT_BYTES} bytes"}]
        )
    try:
        loader = _StrictLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = "; ".join(part for part in (exc.context, exc.problem) if part)
        message = f"YAML error{where}: {_short(what or 'invalid YAML', 300)}"
        raise PolicyConfigError([{"path": "", "message": message}]) from None
    except yaml.YAMLError as exc:
        message = f"YAML error: {_short(str(exc), 300)}"
        raise PolicyConfigError([{"path": "", "message": message}]) from None
    except RecursionError:
        message = "the document is nested too deeply"
        raise PolicyConfigError([{"path": "", "message": message}]) from None
    except Exception as exc:  # a scalar PyYAML cannot build (2026-02-30, a 5000-digit int)
        message = f"invalid YAML value: {_short(str(exc), 300)}"
        raise PolicyConfigError([{"path": "", "message": message}]) from None


# --- parsing --------------------------------------------------------------------------------


def _mapping(value: object, path: str, errors: _Errors, what: str) -> dict[Any, Any] | None:
    """``value`` as a mapping (``None`` counts as empty); an error and ``None`` otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.add(path, f"{what} must be a mapping, got {_describe(value)}")
        return None
    return value


def _unknown_keys(
    value: Mapping[Any, Any], allowed: Sequence[str], path: str, errors: _Errors
) -> None:
    for key in value:
        if key not in allowed:
            errors.add(_join(path, key), f"unknown key; expected one of: {', '.join(allowed)}")


def _choice(
    value: object, choices: Mapping[str, str], path: str, errors: _Errors, what: str
) -> str | None:
    if isinstance(value, str) and value.upper() in choices:
        return choices[value.upper()]
    expected = ", ".join(dict.fromkeys(choices.values()))
    errors.add(path, f"unknown {what}: {_describe(value)}; expected one of: {expected}")
    return None


_TASK_TYPE_CHOICES: Final = {**{t: t for t in _TASK_TYPES}, WILDCARD: WILDCARD}
_PRIORITY_CHOICES: Final = {
    **{p.value: p.value for p in Priority},
    **{code: p.value for code, p in PRIORITY_CODES.items()},
}
_TIER_CHOICES: Final = {t.value: t.value for t in CustomerTier}


class _Context:
    """What parsing the file-wide sections yields for the policy sections."""

    def __init__(self) -> None:
        self.thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
        self.calendar: str | None = None
        self.calendar_explicit = False
        self.pause_on_blocked = False
        self.calendars: list[BusinessCalendar] = []
        self.declared: set[str] = set()  # calendar names, valid or not (no cascading errors)
        self.levels: tuple[tuple[int, str], ...] = ()


class _Parsed(NamedTuple):
    spec: PolicySpec
    path: str
    calendar_path: str | None  # where the calendar was named, when named by the policy


def _parse_minutes(entry: Mapping[Any, Any], key: str, path: str, errors: _Errors) -> int | None:
    if key not in entry:
        errors.add(_join(path, key), "is required")
        return None
    value = entry[key]
    problem = _minutes_problem(value)
    if problem or not isinstance(value, int):
        errors.add(_join(path, key), problem or "must be a whole number of minutes")
        return None
    return value


def _parse_targets(entry: Mapping[Any, Any], path: str, errors: _Errors) -> tuple[int, int] | None:
    start = _parse_minutes(entry, "response_minutes", path, errors)
    resolve = _parse_minutes(entry, "resolution_minutes", path, errors)
    if start is None or resolve is None:
        return None
    if start > resolve:
        errors.add(
            _join(path, "response_minutes"),
            f"response_minutes ({start}) must not exceed resolution_minutes ({resolve})",
        )
        return None
    return start, resolve


def _parse_escalation(value: object, path: str, errors: _Errors) -> tuple[tuple[int, int], ...]:
    mapping = _mapping(value, path, errors, "escalation")
    if mapping is None:
        return ()
    items: list[tuple[int, int, str]] = []
    for key, minutes in mapping.items():
        key_path = _join(path, key)
        found = _LEVEL_RE.fullmatch(key) if isinstance(key, str) else None
        if found is None or int(found.group(1)) < 1:
            errors.add(key_path, "escalation keys are LEVEL_1, LEVEL_2, ... (LEVEL_n, n >= 1)")
            continue
        problem = _minutes_problem(minutes)
        if problem:
            errors.add(key_path, problem)
            continue
        items.append((int(found.group(1)), minutes, key_path))
    items.sort(key=lambda item: item[0])
    pairs = [(level, minutes) for level, minutes, _ in items]
    for index, message in _escalation_order_problems(pairs):
        errors.add(items[index][2], message)
    return tuple(pairs)


def _parse_alert_thresholds(value: object, errors: _Errors) -> tuple[float, float] | None:
    path = "alert_thresholds"
    mapping = _mapping(value, path, errors, path)
    if mapping is None:
        return None
    _unknown_keys(mapping, ("warning", "critical"), path, errors)
    remaining: dict[str, float] = {
        "warning": 100.0 - WARNING_PERCENT,
        "critical": 100.0 - CRITICAL_PERCENT,
    }
    ok = True
    for key in remaining:
        if key in mapping:
            problem = _percent_problem(mapping[key])
            if problem:
                errors.add(_join(path, key), f"{problem} (percent of the time remaining)")
                ok = False
            else:
                remaining[key] = float(mapping[key])
    if not ok:
        return None
    warning, critical = remaining["warning"], remaining["critical"]
    if not warning > critical:
        errors.add(
            path,
            f"warning ({_short(_number(warning))}% remaining) must be more than critical "
            f"({_short(_number(critical))}% remaining): the warning comes first",
        )
        return None
    return (
        float(round(100 - warning, THRESHOLD_DECIMALS)),
        float(round(100 - critical, THRESHOLD_DECIMALS)),
    )


def _parse_escalation_levels(value: object, errors: _Errors) -> tuple[tuple[int, str], ...]:
    path = "escalation_levels"
    mapping = _mapping(value, path, errors, path)
    if mapping is None:
        return ()
    levels: dict[int, str] = {}
    for key, label in mapping.items():
        key_path = _join(path, key)
        level: int | None = None
        if _is_int(key):
            level = key
        elif isinstance(key, str) and key.isascii() and key.isdigit():
            level = int(key)
        if level is None or level < 0:
            errors.add(key_path, f"a level is a whole number >= 0, got {_describe(key)}")
            continue
        if level in levels:
            errors.add(key_path, f"level {_short(level)} is given more than once")
            continue
        problem = _label_problem(label)
        if problem:
            errors.add(key_path, problem)
            continue
        levels[level] = label
    return tuple(sorted(levels.items()))


def _parse_calendar_ref(value: object, path: str, errors: _Errors) -> tuple[bool, str | None]:
    """``(ok, name)``; ``None`` and ``"24x7"`` give ``(True, None)``."""
    if value is None or value == ALWAYS_NAME:
        return True, None
    if not isinstance(value, str):
        errors.add(path, f"a calendar is named by a string, got {_describe(value)}")
        return False, None
    return True, value


def _parse_bool(value: object, path: str, errors: _Errors) -> bool | None:
    if isinstance(value, bool):
        return value
    errors.add(path, f"must be true or false, got {_describe(value)}")
    return None


def _parse_clock(hours: str, minutes: str, seconds: str | None, *, end: bool) -> time | None:
    h, m, s = int(hours), int(minutes), int(seconds or 0)
    if end and (h, m, s) == (24, 0, 0):
        return time(0)
    if h > 23 or m > 59 or s > 59:
        return None
    return time(h, m, s)


def _parse_interval(value: object) -> tuple[time, time] | str:
    """An interval, or the problem with it."""
    found = _INTERVAL_RE.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        return (
            f"an interval is written 'HH:MM-HH:MM' (24-hour clock, 24:00 for midnight), "
            f"got {_describe(value)}"
        )
    sh, sm, ss, eh, em, es = found.groups()
    start = _parse_clock(sh, sm, ss, end=False)
    end = _parse_clock(eh, em, es, end=True)
    if start is None or end is None:
        return f"'{_short(value)}' is not a valid time of day range"
    if end != time(0) and end <= start:
        return (
            f"'{_short(value)}' must end after it starts (write a night shift as two "
            "intervals on consecutive days)"
        )
    return (start, end)


def _parse_hours(
    value: object, path: str, errors: _Errors
) -> dict[int, tuple[tuple[time, time], ...]] | None:
    mapping = _mapping(value, path, errors, "hours")
    if mapping is None:
        return None
    before = len(errors)
    hours: dict[int, tuple[tuple[time, time], ...]] = {}
    for key, intervals in mapping.items():
        day_path = _join(path, key)
        weekday = _WEEKDAY_OF.get(key.lower()) if isinstance(key, str) else None
        if weekday is None:
            errors.add(day_path, "unknown weekday; expected mon, tue, wed, thu, fri, sat, sun")
            continue
        if weekday in hours:
            errors.add(day_path, f"{_WEEKDAYS[weekday]} is given more than once")
            continue
        items = [intervals] if isinstance(intervals, str) else intervals
        if items is None:
            items = []
        if not isinstance(items, list):
            errors.add(
                day_path, f"must be a list of 'HH:MM-HH:MM' intervals, got {_describe(items)}"
            )
            continue
        parsed: list[tuple[time, time]] = []
        for index, item in enumerate(items):
            interval = _parse_interval(item)
            if isinstance(interval, str):
                errors.add(f"{day_path}[{index}]", interval)
            else:
                parsed.append(interval)
        if len(parsed) != len(items):
            continue
        parsed.sort(key=lambda iv: _offset(iv[0], end=False))
        for first, second in pairwise(parsed):
            if _offset(second[0], end=False) < _offset(first[1], end=True):
                errors.add(
                    day_path,
                    f"intervals {_format_interval(first)} and {_format_interval(second)} overlap",
                )
                break
        hours[weekday] = tuple(parsed)
    return hours if len(errors) == before else None


def _parse_holidays(value: object, path: str, errors: _Errors) -> frozenset[date] | None:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        errors.add(path, f"must be a list of ISO dates (YYYY-MM-DD), got {_describe(value)}")
        return None
    days: set[date] = set()
    ok = True
    for index, item in enumerate(value):
        day: date | None = None
        if isinstance(item, date) and not isinstance(item, datetime):
            day = item
        elif isinstance(item, str) and _DATE_RE.fullmatch(item):
            try:
                day = date.fromisoformat(item)
            except ValueError:
                day = None
        if day is None:
            errors.add(
                f"{path}[{index}]", f"must be an ISO date (YYYY-MM-DD), got {_describe(item)}"
            )
            ok = False
        else:
            days.add(day)
    return frozenset(days) if ok else None


def _zone_problem(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return f"must be an IANA time zone name such as Europe/Paris, got {_describe(value)}"
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        return f"unknown time zone '{_short(value)}'"
    return None


def _parse_calendar(
    name: object, value: object, path: str, errors: _Errors
) -> BusinessCalendar | None:
    before = len(errors)
    problem = _name_problem(name, "calendar")
    if problem:
        errors.add(path, problem)
    elif isinstance(name, str) and name.lower() == ALWAYS_NAME:
        errors.add(path, f"'{ALWAYS_NAME}' is built in and cannot be redefined")
    mapping = _mapping(value, path, errors, "a calendar")
    if mapping is None:
        return None
    _unknown_keys(mapping, _CALENDAR_KEYS, path, errors)
    timezone = mapping.get("timezone")
    if "timezone" not in mapping:
        errors.add(_join(path, "timezone"), "is required")
    else:
        zone_problem = _zone_problem(timezone)
        if zone_problem:
            errors.add(_join(path, "timezone"), zone_problem)
    hours: dict[int, tuple[tuple[time, time], ...]] | None = None
    if "hours" not in mapping:
        errors.add(_join(path, "hours"), "is required")
    else:
        hours = _parse_hours(mapping["hours"], _join(path, "hours"), errors)
        if hours is not None and not any(hours.values()):
            errors.add(_join(path, "hours"), "a calendar needs at least one working interval")
    holidays = _parse_holidays(mapping.get("holidays"), _join(path, "holidays"), errors)
    if (
        len(errors) != before
        or hours is None
        or holidays is None
        or not isinstance(name, str)
        or not isinstance(timezone, str)
    ):
        return None
    try:
        return BusinessCalendar(name, timezone, hours, holidays)
    except ValueError as exc:  # pragma: no cover - everything is checked above
        errors.add(path, _short(str(exc), 300))
        return None


def _parse_extension(value: object, errors: _Errors, context: _Context) -> list[_Parsed]:
    """Parse the ``opsflow`` block into ``context``; return its policies (parsed later)."""
    path = EXTENSION_KEY
    mapping = _mapping(value, path, errors, "the opsflow block")
    if mapping is None:
        return []
    _unknown_keys(mapping, _EXTENSION_KEYS, path, errors)
    if "version" in mapping and (
        not _is_int(mapping["version"]) or mapping["version"] != EXTENSION_VERSION
    ):
        errors.add(_join(path, "version"), f"only version {EXTENSION_VERSION} is known")

    defaults_path = _join(path, "defaults")
    defaults = _mapping(mapping.get("defaults"), defaults_path, errors, "defaults")
    if defaults is not None:
        _unknown_keys(defaults, _DEFAULTS_KEYS, defaults_path, errors)
        if "calendar" in defaults:
            ok, name = _parse_calendar_ref(
                defaults["calendar"], _join(defaults_path, "calendar"), errors
            )
            context.calendar, context.calendar_explicit = name, ok and name is not None
        if "pause_on_blocked" in defaults:
            pause = _parse_bool(
                defaults["pause_on_blocked"], _join(defaults_path, "pause_on_blocked"), errors
            )
            context.pause_on_blocked = bool(pause)

    calendars_path = _join(path, "calendars")
    calendars = _mapping(mapping.get("calendars"), calendars_path, errors, "calendars")
    for name, spec in (calendars or {}).items():
        if isinstance(name, str):
            context.declared.add(name)
        calendar = _parse_calendar(name, spec, _join(calendars_path, name), errors)
        if calendar is not None:
            context.calendars.append(calendar)

    policies_path = _join(path, "policies")
    policies = _mapping(mapping.get("policies"), policies_path, errors, "policies")
    parsed: list[_Parsed] = []
    for name, spec in (policies or {}).items():
        result = _parse_policy(name, spec, _join(policies_path, name), errors, context)
        if result is not None:
            parsed.append(result)
    return parsed


def _parse_policy(
    name: object, value: object, path: str, errors: _Errors, context: _Context
) -> _Parsed | None:
    before = len(errors)
    problem = _name_problem(name, "policy")
    if problem:
        errors.add(path, problem)
    mapping = _mapping(value, path, errors, "a policy")
    if mapping is None:
        return None
    _unknown_keys(mapping, _POLICY_KEYS, path, errors)
    selector = [
        _choice(mapping.get(key, WILDCARD), choices, _join(path, key), errors, key)
        for key, choices in (
            ("task_type", _TASK_TYPE_CHOICES),
            ("priority", {**_PRIORITY_CHOICES, WILDCARD: WILDCARD}),
            ("customer_tier", {**_TIER_CHOICES, WILDCARD: WILDCARD}),
        )
    ]
    targets = _parse_targets(mapping, path, errors)
    thresholds: tuple[float, ...] = context.thresholds
    if "thresholds" in mapping:
        raw = mapping["thresholds"]
        problems = _elapsed_pair_problems(raw)
        for suffix, message in problems:
            errors.add(_join(path, "thresholds") + suffix, message)
        if not problems:
            thresholds = (float(raw[0]), float(raw[1]))
    calendar, calendar_path = context.calendar, None
    if "calendar" in mapping:
        calendar_path = _join(path, "calendar")
        _, calendar = _parse_calendar_ref(mapping["calendar"], calendar_path, errors)
    pause: bool | None = context.pause_on_blocked
    if "pause_on_blocked" in mapping:
        pause = _parse_bool(mapping["pause_on_blocked"], _join(path, "pause_on_blocked"), errors)
    active: bool | None = True
    if "is_active" in mapping:
        active = _parse_bool(mapping["is_active"], _join(path, "is_active"), errors)
    escalation: tuple[tuple[int, int], ...] = ()
    if "escalation" in mapping:
        escalation = _parse_escalation(mapping["escalation"], _join(path, "escalation"), errors)
    task_type, priority, tier = selector
    if (
        len(errors) != before
        or not isinstance(name, str)
        or task_type is None
        or priority is None
        or tier is None
        or targets is None
        or pause is None
        or active is None
    ):
        return None
    spec = PolicySpec(
        name=name,
        task_type=task_type,
        priority=priority,
        customer_tier=tier,
        start_minutes=targets[0],
        resolve_minutes=targets[1],
        thresholds=thresholds,
        calendar=calendar,
        pause_on_blocked=pause,
        escalation=escalation,
        is_active=active,
    )
    return _Parsed(spec, path, calendar_path if calendar is not None else None)


def _parse_sla_targets(value: object, errors: _Errors, context: _Context) -> list[_Parsed]:
    path = "sla_targets"
    tiers = _mapping(value, path, errors, path)
    if tiers is None:
        return []
    parsed: list[_Parsed] = []
    seen_tiers: dict[str, str] = {}
    for tier_key, priorities in tiers.items():
        tier_path = _join(path, tier_key)
        tier = _choice(tier_key, _TIER_CHOICES, tier_path, errors, "customer tier")
        if tier is None:
            continue
        if tier in seen_tiers:
            errors.add(tier_path, f"customer tier {tier} is already given as '{seen_tiers[tier]}'")
            continue
        seen_tiers[tier] = _short(tier_key)
        entries = _mapping(priorities, tier_path, errors, "a customer tier")
        seen_priorities: dict[str, str] = {}
        for priority_key, entry in (entries or {}).items():
            entry_path = _join(tier_path, priority_key)
            priority = _choice(priority_key, _PRIORITY_CHOICES, entry_path, errors, "priority")
            if priority is None:
                continue
            if priority in seen_priorities:
                errors.add(
                    entry_path,
                    f"priority {priority} is already given as '{seen_priorities[priority]}'",
                )
                continue
            seen_priorities[priority] = _short(priority_key)
            result = _parse_seed_entry(entry, entry_path, tier, priority, errors, context)
            if result is not None:
                parsed.append(result)
    return parsed


def _parse_seed_entry(
    value: object, path: str, tier: str, priority: str, errors: _Errors, context: _Context
) -> _Parsed | None:
    before = len(errors)
    entry = _mapping(value, path, errors, "SLA targets")
    if entry is None:
        return None
    _unknown_keys(entry, _SEED_ENTRY_KEYS, path, errors)
    targets = _parse_targets(entry, path, errors)
    escalation: tuple[tuple[int, int], ...] = ()
    if "escalation" in entry:
        escalation = _parse_escalation(entry["escalation"], _join(path, "escalation"), errors)
    if len(errors) != before or targets is None:
        return None
    spec = PolicySpec(
        name=seed_policy_name(tier, priority),
        task_type=WILDCARD,
        priority=priority,
        customer_tier=tier,
        start_minutes=targets[0],
        resolve_minutes=targets[1],
        thresholds=context.thresholds,
        calendar=context.calendar,
        pause_on_blocked=context.pause_on_blocked,
        escalation=escalation,
    )
    return _Parsed(spec, path, None)


def _cross_check(parsed: Sequence[_Parsed], calendars: Collection[str], errors: _Errors) -> None:
    names: dict[str, str] = {}
    selectors: dict[tuple[str, str, str], str] = {}
    for spec, path, calendar_path in parsed:
        if spec.name in names:
            errors.add(path, f"policy name '{spec.name}' is already used by {names[spec.name]}")
        else:
            names[spec.name] = path
        if spec.is_active:
            if spec.selector in selectors:
                errors.add(path, _selector_clash(spec, selectors[spec.selector]))
            else:
                selectors[spec.selector] = path
        if calendar_path is not None and spec.calendar not in calendars:
            errors.add(calendar_path, f"unknown calendar '{_short(spec.calendar)}'")


def _selector_clash(spec: PolicySpec, other: str) -> str:
    task_type, priority, tier = spec.selector
    return (
        f"{other} already applies to task_type={task_type}, priority={priority}, "
        f"customer_tier={tier}; at most one active policy per selector"
    )


def parse_sla_config(text: str, *, known_calendars: Collection[str] = ()) -> SlaConfig:
    """Parse a seed 002 ``sla_config.yaml`` (plus the OpsFlow extension block).

    ``known_calendars`` names calendars defined elsewhere (the database) that policies may
    reference. Raises ``PolicyConfigError`` listing every problem; never anything else.
    """
    data = _load(text)
    try:
        return _parse_document(data, known_calendars)
    except PolicyConfigError:
        raise
    except Exception as exc:  # a bug: still reported as a configuration error
        message = f"internal error while reading the configuration ({type(exc).__name__})"
        raise PolicyConfigError([{"path": "", "message": message}]) from exc


def _parse_document(data: object, known_calendars: Collection[str]) -> SlaConfig:
    errors = _Errors()
    if data is None:
        raise PolicyConfigError([{"path": "", "message": "the document is empty"}])
    if not isinstance(data, dict):
        raise PolicyConfigError(
            [{"path": "", "message": f"the document must be a mapping, got {_describe(data)}"}]
        )
    _unknown_keys(data, _TOP_KEYS, "", errors)
    context = _Context()
    thresholds = _parse_alert_thresholds(data.get("alert_thresholds"), errors)
    if thresholds is not None:
        context.thresholds = thresholds
    context.levels = _parse_escalation_levels(data.get("escalation_levels"), errors)
    extension = _parse_extension(data.get(EXTENSION_KEY), errors, context)
    seed = _parse_sla_targets(data.get("sla_targets"), errors, context)

    calendar_names = context.declared | {name for name in known_calendars if isinstance(name, str)}
    if context.calendar_explicit and context.calendar not in calendar_names:
        errors.add(
            f"{EXTENSION_KEY}.defaults.calendar", f"unknown calendar '{_short(context.calendar)}'"
        )
    _cross_check([*seed, *extension], calendar_names, errors)
    if errors:
        raise PolicyConfigError(errors.items)
    return SlaConfig(
        policies=tuple(item.spec for item in [*seed, *extension]),
        calendars=tuple(context.calendars),
        thresholds=context.thresholds,
        escalation_levels=context.levels,
        default_calendar=context.calendar,
        default_pause_on_blocked=context.pause_on_blocked,
    )


# --- validation of configurations built in code ---------------------------------------------


def _validate_calendars(config: SlaConfig, errors: _Errors) -> set[str]:
    names: set[str] = set()
    for index, calendar in enumerate(config.calendars):
        if not isinstance(calendar, BusinessCalendar):
            errors.add(
                f"calendars[{index}]", f"must be a BusinessCalendar, got {_describe(calendar)}"
            )
            continue
        path = f"calendars.{_short(calendar.name)}"
        problem = _name_problem(calendar.name, "calendar")
        if problem:
            errors.add(path, problem)
        elif calendar.name.lower() == ALWAYS_NAME:
            errors.add(path, f"'{ALWAYS_NAME}' is built in and cannot be redefined")
        if calendar.name in names:
            errors.add(path, f"calendar name '{_short(calendar.name)}' is used more than once")
        names.add(calendar.name)
        if not calendar.has_working_time:
            errors.add(_join(path, "hours"), "a calendar needs at least one working interval")
        for weekday, intervals in calendar.hours.items():
            for start, end in intervals:
                if start.microsecond or end.microsecond:
                    errors.add(
                        _join(path, f"hours.{_WEEKDAYS[weekday]}"),
                        "interval bounds must be whole seconds",
                    )
    return names


def _validate_policy(
    spec: object, index: int, calendars: Collection[str], errors: _Errors
) -> PolicySpec | None:
    if not isinstance(spec, PolicySpec):
        errors.add(f"policies[{index}]", f"must be a PolicySpec, got {_describe(spec)}")
        return None
    path = f"policies.{_short(spec.name)}" if isinstance(spec.name, str) else f"policies[{index}]"
    problem = _name_problem(spec.name, "policy")
    if problem:
        errors.add(path, problem)
    for key, allowed in (
        ("task_type", _TASK_TYPES),
        ("priority", _PRIORITIES),
        ("customer_tier", _TIERS),
    ):
        value = getattr(spec, key)
        if value != WILDCARD and value not in allowed:
            choices = ", ".join([*sorted(allowed), WILDCARD])
            errors.add(_join(path, key), f"must be one of {choices}, got {_describe(value)}")
    minutes_ok = True
    for key in ("start_minutes", "resolve_minutes"):
        problem = _minutes_problem(getattr(spec, key))
        if problem:
            errors.add(_join(path, key), problem)
            minutes_ok = False
    if minutes_ok and spec.start_minutes > spec.resolve_minutes:
        errors.add(
            _join(path, "start_minutes"),
            f"start_minutes ({spec.start_minutes}) must not exceed resolve_minutes "
            f"({spec.resolve_minutes})",
        )
    for suffix, message in _elapsed_pair_problems(spec.thresholds):
        errors.add(_join(path, "thresholds") + suffix, message)
    if spec.calendar is not None and spec.calendar not in calendars:
        errors.add(_join(path, "calendar"), f"unknown calendar {_describe(spec.calendar)}")
    for key in ("pause_on_blocked", "is_active"):
        if not isinstance(getattr(spec, key), bool):
            errors.add(_join(path, key), "must be true or false")
    _validate_escalation(spec.escalation, _join(path, "escalation"), errors)
    return spec


def _validate_escalation(value: object, path: str, errors: _Errors) -> None:
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
        if not _is_int(level) or level < 1:
            errors.add(item_path, f"the level must be a whole number >= 1, got {_describe(level)}")
            continue
        problem = _minutes_problem(minutes)
        if problem:
            errors.add(item_path, problem)
            continue
        pairs.append((level, minutes))
    if len(pairs) == len(value):
        for index, message in _escalation_order_problems(pairs):
            errors.add(f"{path}[{index}]", message)


def _validate_levels(value: object, errors: _Errors) -> None:
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
        if not _is_int(level) or level < 0:
            errors.add(item_path, f"the level must be a whole number >= 0, got {_describe(level)}")
            continue
        if level in seen:
            errors.add(item_path, f"level {_short(level)} is given more than once")
        seen.add(level)
        problem = _label_problem(label)
        if problem:
            errors.add(item_path, problem)


def validate_config(config: SlaConfig, *, known_calendars: Collection[str] = ()) -> None:
    """Check a configuration built in code by the rules the YAML format enforces.

    Paths name fields of ``SlaConfig`` (``policies.<name>.start_minutes``). Raises
    ``PolicyConfigError`` listing every problem.
    """
    if not isinstance(config, SlaConfig):
        raise PolicyConfigError([{"path": "", "message": "must be an SlaConfig"}])
    errors = _Errors()
    calendars = _validate_calendars(config, errors) | {
        name for name in known_calendars if isinstance(name, str)
    }
    for suffix, message in _elapsed_pair_problems(config.thresholds):
        errors.add("thresholds" + suffix, message)
    _validate_levels(config.escalation_levels, errors)
    if config.default_calendar is not None and config.default_calendar not in calendars:
        errors.add("default_calendar", f"unknown calendar {_describe(config.default_calendar)}")
    if not isinstance(config.default_pause_on_blocked, bool):
        errors.add("default_pause_on_blocked", "must be true or false")
    names: set[str] = set()
    selectors: dict[tuple[str, str, str], str] = {}
    for index, item in enumerate(config.policies):
        spec = _validate_policy(item, index, calendars, errors)
        if spec is None:
            continue
        path = f"policies.{_short(spec.name)}"
        if spec.name in names:
            errors.add(path, f"policy name '{_short(spec.name)}' is used more than once")
        names.add(spec.name)
        if spec.is_active is True:
            try:
                other = selectors.get(spec.selector)
            except TypeError:  # an unhashable selector field, reported above
                continue
            if other is not None:
                errors.add(path, _selector_clash(spec, other))
            else:
                selectors[spec.selector] = path
    if errors:
        raise PolicyConfigError(errors.items)


# --- export ---------------------------------------------------------------------------------


class _FlowList(list[Any]):
    """A list written on one line (``["09:00-17:00"]``)."""


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_flow(dumper: yaml.SafeDumper, data: _FlowList) -> SequenceNode:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


_Dumper.add_representer(_FlowList, _represent_flow)


def _is_seed_shaped(spec: PolicySpec, config: SlaConfig) -> bool:
    return (
        spec.task_type == WILDCARD
        and spec.priority in _PRIORITIES
        and spec.customer_tier in _TIERS
        and spec.name == seed_policy_name(spec.customer_tier, spec.priority)
        and spec.thresholds == config.thresholds
        and spec.calendar == config.default_calendar
        and spec.pause_on_blocked == config.default_pause_on_blocked
        and spec.is_active
    )


def _escalation_yaml(escalation: tuple[tuple[int, int], ...]) -> dict[str, int]:
    return {f"LEVEL_{level}": minutes for level, minutes in escalation}


def _calendar_yaml(calendar: BusinessCalendar) -> dict[str, Any]:
    result: dict[str, Any] = {
        "timezone": calendar.timezone,
        "hours": {
            _WEEKDAYS[weekday]: _FlowList(_format_interval(iv) for iv in intervals)
            for weekday, intervals in sorted(calendar.hours.items())
        },
    }
    if calendar.holidays:
        result["holidays"] = _FlowList(day.isoformat() for day in sorted(calendar.holidays))
    return result


def _policy_yaml(spec: PolicySpec) -> dict[str, Any]:
    result: dict[str, Any] = {
        "task_type": spec.task_type,
        "priority": spec.priority,
        "customer_tier": spec.customer_tier,
        "response_minutes": spec.start_minutes,
        "resolution_minutes": spec.resolve_minutes,
        "thresholds": _FlowList(_number(v) for v in spec.thresholds),
        "calendar": spec.calendar or ALWAYS_NAME,
        "pause_on_blocked": spec.pause_on_blocked,
    }
    if spec.escalation:
        result["escalation"] = _escalation_yaml(spec.escalation)
    result["is_active"] = spec.is_active
    return result


_HEADER = """\
# SLA configuration (seed 002 sla_config.yaml format), written by OpsFlow.
# alert_thresholds are percent of the time REMAINING; the opsflow block, when present,
# holds what seed 002's format cannot say (see opsflow.sla.policies).
"""


def dump_sla_config(config: SlaConfig, *, known_calendars: Collection[str] = ()) -> str:
    """Write ``config`` in seed 002's format (plus the ``opsflow`` block only when needed).

    Validates first (``PolicyConfigError``); ``parse_sla_config`` of the result, with the same
    ``known_calendars``, equals ``config``.
    """
    validate_config(config, known_calendars=known_calendars)
    seed: dict[tuple[str, str], PolicySpec] = {}
    extension: list[PolicySpec] = []
    for spec in config.policies:
        if _is_seed_shaped(spec, config):
            seed[(spec.customer_tier, spec.priority)] = spec
        else:
            extension.append(spec)

    targets: dict[str, Any] = {}
    for tier in CustomerTier:
        entries: dict[str, Any] = {}
        for code, priority in PRIORITY_CODES.items():
            found = seed.get((tier.value, priority.value))
            if found is None:
                continue
            entry: dict[str, Any] = {
                "response_minutes": found.start_minutes,
                "resolution_minutes": found.resolve_minutes,
            }
            if found.escalation:
                entry["escalation"] = _escalation_yaml(found.escalation)
            entries[code] = entry
        if entries:
            targets[tier.value] = entries

    warning, critical = config.thresholds
    document: dict[str, Any] = {
        "sla_targets": targets,
        "alert_thresholds": {
            "warning": _number(round(100 - warning, THRESHOLD_DECIMALS)),
            "critical": _number(round(100 - critical, THRESHOLD_DECIMALS)),
        },
    }
    if config.escalation_levels:
        document["escalation_levels"] = dict(config.escalation_levels)

    block: dict[str, Any] = {}
    if config.default_calendar is not None or config.default_pause_on_blocked:
        block["defaults"] = {
            "calendar": config.default_calendar or ALWAYS_NAME,
            "pause_on_blocked": config.default_pause_on_blocked,
        }
    if config.calendars:
        block["calendars"] = {c.name: _calendar_yaml(c) for c in config.calendars}
    if extension:
        block["policies"] = {spec.name: _policy_yaml(spec) for spec in extension}
    if block:
        document[EXTENSION_KEY] = {"version": EXTENSION_VERSION, **block}

    body = yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return _HEADER + str(body)


# --- diffs ----------------------------------------------------------------------------------


def policy_to_dict(spec: PolicySpec) -> dict[str, Any]:
    """A JSON-friendly rendering of a policy (for APIs and audit records)."""
    return {
        "name": spec.name,
        "task_type": spec.task_type,
        "priority": spec.priority,
        "customer_tier": spec.customer_tier,
        "start_minutes": spec.start_minutes,
        "resolve_minutes": spec.resolve_minutes,
        "thresholds": list(spec.thresholds),
        "calendar": spec.calendar,
        "pause_on_blocked": spec.pause_on_blocked,
        "escalation": [{"level": level, "minutes": minutes} for level, minutes in spec.escalation],
        "is_active": spec.is_active,
    }


def calendar_to_dict(calendar: BusinessCalendar) -> dict[str, Any]:
    """A JSON-friendly rendering of a calendar (weekday names, ``HH:MM-HH:MM`` intervals)."""
    return {
        "name": calendar.name,
        "timezone": calendar.timezone,
        "hours": {
            _WEEKDAYS[weekday]: [_format_interval(iv) for iv in intervals]
            for weekday, intervals in sorted(calendar.hours.items())
        },
        "holidays": [day.isoformat() for day in sorted(calendar.holidays)],
    }


def calendar_from_dict(name: str, data: Mapping[str, Any]) -> BusinessCalendar:
    """The calendar ``calendar_to_dict`` renders (without its ``name``), read back.

    Same rules and error paths as a calendar of the YAML extension block (relative to the
    calendar: ``hours.mon``). Raises ``PolicyConfigError`` listing every problem.
    """
    errors = _Errors()
    calendar = _parse_calendar(name, dict(data), "", errors)
    if errors or calendar is None:
        raise PolicyConfigError(errors.items)
    return calendar


def _settings_dict(config: SlaConfig) -> dict[str, Any]:
    return {
        "thresholds": list(config.thresholds),
        "escalation_levels": {str(level): label for level, label in config.escalation_levels},
        "default_calendar": config.default_calendar,
        "default_pause_on_blocked": config.default_pause_on_blocked,
    }


def _field_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        key: {"from": old.get(key), "to": new.get(key)}
        for key in dict.fromkeys([*old, *new])
        if old.get(key) != new.get(key)
    }


def _diff_named(
    kind: str,
    old: Mapping[str, dict[str, Any]],
    new: Mapping[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            entries.append({"kind": kind, "name": name, "change": "removed", "old": old[name]})
        elif name not in old:
            entries.append({"kind": kind, "name": name, "change": "added", "new": new[name]})
        else:
            changes = _field_changes(old[name], new[name])
            if changes:
                entries.append(
                    {"kind": kind, "name": name, "change": "changed", "changes": changes}
                )
    return entries


def diff_configs(old: SlaConfig, new: SlaConfig) -> list[dict[str, Any]]:
    """What changed from ``old`` to ``new``, for the audit log of a (hot) reload.

    Entries, JSON-friendly, policies first (by name), then calendars (by name), then the
    file-wide settings (``kind: "settings"``, name ``"config"``)::

        {"kind": "policy", "name": n, "change": "added", "new": {...}}
        {"kind": "policy", "name": n, "change": "removed", "old": {...}}
        {"kind": "policy", "name": n, "change": "changed",
         "changes": {"start_minutes": {"from": 15, "to": 20}}}

    Empty when the two are equal.
    """
    entries = _diff_named(
        "policy",
        {p.name: policy_to_dict(p) for p in old.policies},
        {p.name: policy_to_dict(p) for p in new.policies},
    )
    entries += _diff_named(
        "calendar",
        {c.name: calendar_to_dict(c) for c in old.calendars},
        {c.name: calendar_to_dict(c) for c in new.calendars},
    )
    changes = _field_changes(_settings_dict(old), _settings_dict(new))
    if changes:
        entries.append(
            {"kind": "settings", "name": "config", "change": "changed", "changes": changes}
        )
    return entries
