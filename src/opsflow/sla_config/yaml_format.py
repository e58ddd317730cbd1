"""The ``sla_config.yaml`` format and its reader (pure).

The ``sla_config.yaml`` format is accepted exactly::

    sla_targets:                     # tier (any case) -> priority -> targets
      ENTERPRISE:
        P0:                          # P0 CRITICAL, P1 HIGH, P2 MEDIUM, P3 LOW (any case;
          response_minutes: 15       #   CRITICAL/HIGH/MEDIUM/LOW are accepted too)
          resolution_minutes: 60
          escalation:                # optional: LEVEL_n -> working minutes after creation
            LEVEL_1: 10
    alert_thresholds:                # percent of the time *remaining*
      warning: 15                    # -> 85.0 % elapsed
      critical: 5                    # -> 95.0 % elapsed
    escalation_levels:               # level number -> label (the level's message)
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

The rules a valid configuration follows are listed in ``sla_config.validation``; the reader
reports every violation at once with the path as the document writes it. No input makes
``parse_sla_config`` raise anything but ``PolicyConfigError``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Hashable, Mapping, Sequence
from typing import Any, Final, NamedTuple

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode

from opsflow.models.enums import CustomerTier, Priority
from opsflow.sla.calendar import ALWAYS_NAME, BusinessCalendar
from opsflow.sla.calendar_format import parse_calendar
from opsflow.sla.config_errors import (
    PolicyConfigError,
    Problems,
    as_mapping,
    describe,
    is_int,
    join,
    name_problem,
    number,
    short,
    unknown_keys,
)
from opsflow.sla.defaults import CRITICAL_PERCENT, WARNING_PERCENT
from opsflow.sla.policies import DEFAULT_THRESHOLDS, PRIORITY_CODES, WILDCARD, PolicySpec
from opsflow.sla_config.model import SlaConfig
from opsflow.sla_config.validation import (
    TASK_TYPES,
    THRESHOLD_DECIMALS,
    elapsed_pair_problems,
    escalation_order_problems,
    label_problem,
    minutes_problem,
    percent_problem,
    selector_clash,
)

MAX_DOCUMENT_BYTES: Final = 1024 * 1024
EXTENSION_KEY: Final = "opsflow"
EXTENSION_VERSION: Final = 1
_CODE_OF: Final = {priority: code for code, priority in PRIORITY_CODES.items()}
_LEVEL_RE: Final = re.compile(r"level_([0-9]{1,6})", re.IGNORECASE)
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_TOP_KEYS: Final = ("sla_targets", "alert_thresholds", "escalation_levels", EXTENSION_KEY)
_SEED_ENTRY_KEYS: Final = ("response_minutes", "resolution_minutes", "escalation")
_EXTENSION_KEYS: Final = ("version", "defaults", "calendars", "policies")
_DEFAULTS_KEYS: Final = ("calendar", "pause_on_blocked")
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


def seed_policy_name(customer_tier: str, priority: str) -> str:
    """The name an ``sla_targets`` entry gets: ``enterprise-p0``."""
    return f"{str(customer_tier).lower()}-{_CODE_OF[Priority(str(priority))].lower()}"


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
                    f"found duplicate key '{short(key)}'",
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
        message = f"YAML error{where}: {short(what or 'invalid YAML', 300)}"
        raise PolicyConfigError([{"path": "", "message": message}]) from None
    except yaml.YAMLError as exc:
        message = f"YAML error: {short(str(exc), 300)}"
        raise PolicyConfigError([{"path": "", "message": message}]) from None
    except RecursionError:
        message = "the document is nested too deeply"
        raise PolicyConfigError([{"path": "", "message": message}]) from None
    except Exception as exc:  # a scalar PyYAML cannot build (2026-02-30, a 5000-digit int)
        message = f"invalid YAML value: {short(str(exc), 300)}"
        raise PolicyConfigError([{"path": "", "message": message}]) from None


def _choice(
    value: object, choices: Mapping[str, str], path: str, errors: Problems, what: str
) -> str | None:
    if isinstance(value, str) and value.upper() in choices:
        return choices[value.upper()]
    if what == "priority":
        # The file's own words first: sla_targets are keyed P0..P3.
        codes = ", ".join(PRIORITY_CODES)
        names = ", ".join(p.value for p in PRIORITY_CODES.values())
        expected = f"{codes} (or {names}" + (', or "*")' if WILDCARD in choices else ")")
    else:
        expected = ", ".join(dict.fromkeys(choices.values()))
    errors.add(path, f"unknown {what}: {describe(value)}; expected one of: {expected}")
    return None


_TASK_TYPE_CHOICES: Final = {**{t: t for t in TASK_TYPES}, WILDCARD: WILDCARD}
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


def _parse_minutes(entry: Mapping[Any, Any], key: str, path: str, errors: Problems) -> int | None:
    if key not in entry:
        errors.add(join(path, key), "is required")
        return None
    value = entry[key]
    problem = minutes_problem(value)
    if problem or not isinstance(value, int):
        errors.add(join(path, key), problem or "must be a whole number of minutes")
        return None
    return value


def _parse_targets(entry: Mapping[Any, Any], path: str, errors: Problems) -> tuple[int, int] | None:
    start = _parse_minutes(entry, "response_minutes", path, errors)
    resolve = _parse_minutes(entry, "resolution_minutes", path, errors)
    if start is None or resolve is None:
        return None
    if start > resolve:
        errors.add(
            join(path, "response_minutes"),
            f"response_minutes ({start}) must not exceed resolution_minutes ({resolve})",
        )
        return None
    return start, resolve


def _parse_escalation(value: object, path: str, errors: Problems) -> tuple[tuple[int, int], ...]:
    mapping = as_mapping(value, path, errors, "escalation")
    if mapping is None:
        return ()
    items: list[tuple[int, int, str]] = []
    for key, minutes in mapping.items():
        key_path = join(path, key)
        found = _LEVEL_RE.fullmatch(key) if isinstance(key, str) else None
        if found is None or int(found.group(1)) < 1:
            errors.add(key_path, "escalation keys are LEVEL_1, LEVEL_2, ... (LEVEL_n, n >= 1)")
            continue
        problem = minutes_problem(minutes)
        if problem:
            errors.add(key_path, problem)
            continue
        items.append((int(found.group(1)), minutes, key_path))
    items.sort(key=lambda item: item[0])
    pairs = [(level, minutes) for level, minutes, _ in items]
    for index, message in escalation_order_problems(pairs):
        errors.add(items[index][2], message)
    return tuple(pairs)


def _parse_alert_thresholds(value: object, errors: Problems) -> tuple[float, float] | None:
    path = "alert_thresholds"
    mapping = as_mapping(value, path, errors, path)
    if mapping is None:
        return None
    unknown_keys(mapping, ("warning", "critical"), path, errors)
    remaining: dict[str, float] = {
        "warning": 100.0 - WARNING_PERCENT,
        "critical": 100.0 - CRITICAL_PERCENT,
    }
    ok = True
    for key in remaining:
        if key in mapping:
            problem = percent_problem(mapping[key])
            if problem:
                errors.add(join(path, key), f"{problem} (percent of the time remaining)")
                ok = False
            else:
                remaining[key] = float(mapping[key])
    if not ok:
        return None
    warning, critical = remaining["warning"], remaining["critical"]
    if not warning > critical:
        errors.add(
            path,
            f"warning ({short(number(warning))}% remaining) must be more than critical "
            f"({short(number(critical))}% remaining): the warning comes first",
        )
        return None
    return (
        float(round(100 - warning, THRESHOLD_DECIMALS)),
        float(round(100 - critical, THRESHOLD_DECIMALS)),
    )


def _parse_escalation_levels(value: object, errors: Problems) -> tuple[tuple[int, str], ...]:
    path = "escalation_levels"
    mapping = as_mapping(value, path, errors, path)
    if mapping is None:
        return ()
    levels: dict[int, str] = {}
    for key, label in mapping.items():
        key_path = join(path, key)
        level: int | None = None
        if is_int(key):
            level = key
        elif isinstance(key, str) and key.isascii() and key.isdigit():
            level = int(key)
        if level is None or level < 0:
            errors.add(key_path, f"a level is a whole number >= 0, got {describe(key)}")
            continue
        if level in levels:
            errors.add(key_path, f"level {short(level)} is given more than once")
            continue
        problem = label_problem(label)
        if problem:
            errors.add(key_path, problem)
            continue
        levels[level] = label
    return tuple(sorted(levels.items()))


def _parse_calendar_ref(value: object, path: str, errors: Problems) -> tuple[bool, str | None]:
    """``(ok, name)``; ``None`` and ``"24x7"`` give ``(True, None)``."""
    if value is None or value == ALWAYS_NAME:
        return True, None
    if not isinstance(value, str):
        errors.add(path, f"a calendar is named by a string, got {describe(value)}")
        return False, None
    return True, value


def _parse_bool(value: object, path: str, errors: Problems) -> bool | None:
    if isinstance(value, bool):
        return value
    errors.add(path, f"must be true or false, got {describe(value)}")
    return None


def _parse_extension(value: object, errors: Problems, context: _Context) -> list[_Parsed]:
    """Parse the ``opsflow`` block into ``context``; return its policies (parsed later)."""
    path = EXTENSION_KEY
    mapping = as_mapping(value, path, errors, "the opsflow block")
    if mapping is None:
        return []
    unknown_keys(mapping, _EXTENSION_KEYS, path, errors)
    if "version" in mapping and (
        not is_int(mapping["version"]) or mapping["version"] != EXTENSION_VERSION
    ):
        errors.add(join(path, "version"), f"only version {EXTENSION_VERSION} is known")

    defaults_path = join(path, "defaults")
    defaults = as_mapping(mapping.get("defaults"), defaults_path, errors, "defaults")
    if defaults is not None:
        unknown_keys(defaults, _DEFAULTS_KEYS, defaults_path, errors)
        if "calendar" in defaults:
            ok, name = _parse_calendar_ref(
                defaults["calendar"], join(defaults_path, "calendar"), errors
            )
            context.calendar, context.calendar_explicit = name, ok and name is not None
        if "pause_on_blocked" in defaults:
            pause = _parse_bool(
                defaults["pause_on_blocked"], join(defaults_path, "pause_on_blocked"), errors
            )
            context.pause_on_blocked = bool(pause)

    calendars_path = join(path, "calendars")
    calendars = as_mapping(mapping.get("calendars"), calendars_path, errors, "calendars")
    for name, spec in (calendars or {}).items():
        if isinstance(name, str):
            context.declared.add(name)
        calendar = parse_calendar(name, spec, join(calendars_path, name), errors)
        if calendar is not None:
            context.calendars.append(calendar)

    policies_path = join(path, "policies")
    policies = as_mapping(mapping.get("policies"), policies_path, errors, "policies")
    parsed: list[_Parsed] = []
    for name, spec in (policies or {}).items():
        result = _parse_policy(name, spec, join(policies_path, name), errors, context)
        if result is not None:
            parsed.append(result)
    return parsed


def _parse_policy(
    name: object, value: object, path: str, errors: Problems, context: _Context
) -> _Parsed | None:
    before = len(errors)
    problem = name_problem(name, "policy")
    if problem:
        errors.add(path, problem)
    mapping = as_mapping(value, path, errors, "a policy")
    if mapping is None:
        return None
    unknown_keys(mapping, _POLICY_KEYS, path, errors)
    selector = [
        _choice(mapping.get(key, WILDCARD), choices, join(path, key), errors, key)
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
        problems = elapsed_pair_problems(raw)
        for suffix, message in problems:
            errors.add(join(path, "thresholds") + suffix, message)
        if not problems:
            thresholds = (float(raw[0]), float(raw[1]))
    calendar, calendar_path = context.calendar, None
    if "calendar" in mapping:
        calendar_path = join(path, "calendar")
        _, calendar = _parse_calendar_ref(mapping["calendar"], calendar_path, errors)
    pause: bool | None = context.pause_on_blocked
    if "pause_on_blocked" in mapping:
        pause = _parse_bool(mapping["pause_on_blocked"], join(path, "pause_on_blocked"), errors)
    active: bool | None = True
    if "is_active" in mapping:
        active = _parse_bool(mapping["is_active"], join(path, "is_active"), errors)
    escalation: tuple[tuple[int, int], ...] = ()
    if "escalation" in mapping:
        escalation = _parse_escalation(mapping["escalation"], join(path, "escalation"), errors)
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


def _parse_sla_targets(value: object, errors: Problems, context: _Context) -> list[_Parsed]:
    path = "sla_targets"
    tiers = as_mapping(value, path, errors, path)
    if tiers is None:
        return []
    parsed: list[_Parsed] = []
    seen_tiers: dict[str, str] = {}
    for tier_key, priorities in tiers.items():
        tier_path = join(path, tier_key)
        tier = _choice(tier_key, _TIER_CHOICES, tier_path, errors, "customer tier")
        if tier is None:
            continue
        if tier in seen_tiers:
            errors.add(tier_path, f"customer tier {tier} is already given as '{seen_tiers[tier]}'")
            continue
        seen_tiers[tier] = short(tier_key)
        entries = as_mapping(priorities, tier_path, errors, "a customer tier")
        seen_priorities: dict[str, str] = {}
        for priority_key, entry in (entries or {}).items():
            entry_path = join(tier_path, priority_key)
            priority = _choice(priority_key, _PRIORITY_CHOICES, entry_path, errors, "priority")
            if priority is None:
                continue
            if priority in seen_priorities:
                errors.add(
                    entry_path,
                    f"priority {priority} is already given as '{seen_priorities[priority]}'",
                )
                continue
            seen_priorities[priority] = short(priority_key)
            result = _parse_seed_entry(entry, entry_path, tier, priority, errors, context)
            if result is not None:
                parsed.append(result)
    return parsed


def _parse_seed_entry(
    value: object, path: str, tier: str, priority: str, errors: Problems, context: _Context
) -> _Parsed | None:
    before = len(errors)
    entry = as_mapping(value, path, errors, "SLA targets")
    if entry is None:
        return None
    unknown_keys(entry, _SEED_ENTRY_KEYS, path, errors)
    targets = _parse_targets(entry, path, errors)
    escalation: tuple[tuple[int, int], ...] = ()
    if "escalation" in entry:
        escalation = _parse_escalation(entry["escalation"], join(path, "escalation"), errors)
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


def _cross_check(parsed: Sequence[_Parsed], calendars: Collection[str], errors: Problems) -> None:
    names: dict[str, str] = {}
    selectors: dict[tuple[str, str, str], str] = {}
    for spec, path, calendar_path in parsed:
        if spec.name in names:
            errors.add(path, f"policy name '{spec.name}' is already used by {names[spec.name]}")
        else:
            names[spec.name] = path
        if spec.is_active:
            if spec.selector in selectors:
                errors.add(path, selector_clash(spec, selectors[spec.selector]))
            else:
                selectors[spec.selector] = path
        if calendar_path is not None and spec.calendar not in calendars:
            errors.add(calendar_path, f"unknown calendar '{short(spec.calendar)}'")


def parse_sla_config(text: str, *, known_calendars: Collection[str] = ()) -> SlaConfig:
    """Parse an ``sla_config.yaml`` (plus the OpsFlow extension block).

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
    errors = Problems()
    if data is None:
        raise PolicyConfigError([{"path": "", "message": "the document is empty"}])
    if not isinstance(data, dict):
        raise PolicyConfigError(
            [{"path": "", "message": f"the document must be a mapping, got {describe(data)}"}]
        )
    unknown_keys(data, _TOP_KEYS, "", errors)
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
            f"{EXTENSION_KEY}.defaults.calendar", f"unknown calendar '{short(context.calendar)}'"
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
