"""SLA policies: sla_config.yaml import/export, matching, defaults, validation, diffs.

Property tests: ``parse(dump(c)) == c`` for generated valid configurations, and no input
(random text, random YAML structures, mutated valid documents) makes ``parse_sla_config``
raise anything but ``PolicyConfigError``.
"""

from __future__ import annotations

from datetime import date, time
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsflow.models.enums import CustomerTier, Priority, TaskType
from opsflow.sla.calendar import BusinessCalendar
from opsflow.sla.calendar_format import calendar_to_dict
from opsflow.sla.config_errors import PolicyConfigError
from opsflow.sla.defaults import MAX_SLA_MINUTES, PRIORITY_DEFAULTS
from opsflow.sla.policies import (
    DEFAULT_THRESHOLDS,
    PolicySpec,
    ResolvedTargets,
    match,
    resolve_targets,
)
from opsflow.sla_config.diff import diff_configs, policy_to_dict
from opsflow.sla_config.model import SlaConfig
from opsflow.sla_config.validation import validate_config
from opsflow.sla_config.yaml_dump import dump_sla_config
from opsflow.sla_config.yaml_format import MAX_DOCUMENT_BYTES, parse_sla_config, seed_policy_name

# The reference sla_config.yaml, verbatim.
SEED_002 = """\
sla_targets:
  ENTERPRISE:
    P0:
      response_minutes: 15
      resolution_minutes: 60
      escalation:
        LEVEL_1: 10
        LEVEL_2: 20
        LEVEL_3: 30
        LEVEL_4: 45

    P1:
      response_minutes: 60
      resolution_minutes: 240

    P2:
      response_minutes: 240
      resolution_minutes: 480

    P3:
      response_minutes: 480
      resolution_minutes: 1440

  PREMIUM:
    P0:
      response_minutes: 30
      resolution_minutes: 120

    P1:
      response_minutes: 120
      resolution_minutes: 480

    P2:
      response_minutes: 360
      resolution_minutes: 720

    P3:
      response_minutes: 720
      resolution_minutes: 1440

  STANDARD:
    P1:
      response_minutes: 240
      resolution_minutes: 720
    P2:
      response_minutes: 480
      resolution_minutes: 1440
    P3:
      response_minutes: 1440
      resolution_minutes: 2880

  BASIC:
    P2:
      response_minutes: 720
      resolution_minutes: 1440
    P3:
      response_minutes: 1440
      resolution_minutes: 4320


alert_thresholds:
  warning: 15     # Alert when 15% or less time remains
  critical: 5     # Critical alert when 5% or less remains

escalation_levels:
  0: "No escalation"
  1: "Team lead notified"
  2: "Manager notified"
  4: "Director notified"
  5: "VP notified"
  # ... more levels
"""

EXTENDED = """\
sla_targets:
  enterprise:
    p0:
      response_minutes: 15
      resolution_minutes: 60
  Premium:
    HIGH:
      response_minutes: 120
      resolution_minutes: 480
alert_thresholds:
  warning: 20
  critical: 2.5
opsflow:
  version: 1
  defaults:
    calendar: business-hours
    pause_on_blocked: true
  calendars:
    business-hours:
      timezone: Europe/Paris
      hours:
        mon: ["09:00-17:00"]
        Tuesday: ["13:00-17:00", "09:00-12:00"]
        sat: "10:00-24:00"
        sun: []
      holidays: [2026-12-25, "2027-01-01"]
  policies:
    incident-critical:
      task_type: incident
      priority: P0
      response_minutes: 10
      resolution_minutes: 60
      thresholds: [50, 90.5]
      calendar: 24x7
      pause_on_blocked: false
      escalation: {LEVEL_2: 15, level_1: 5}
    old-task:
      task_type: TASK
      customer_tier: basic
      response_minutes: 100
      resolution_minutes: 200
      is_active: false
"""

BUSINESS_HOURS = BusinessCalendar(
    "business-hours",
    "Europe/Paris",
    {
        0: ((time(9), time(17)),),
        1: ((time(9), time(12)), (time(13), time(17))),
        5: ((time(10), time(0)),),
        6: (),
    },
    frozenset({date(2026, 12, 25), date(2027, 1, 1)}),
)


def spec(
    name: str,
    task_type: str = "*",
    priority: str = "*",
    customer_tier: str = "*",
    start: int = 10,
    resolve: int = 100,
    **extra: Any,
) -> PolicySpec:
    return PolicySpec(name, task_type, priority, customer_tier, start, resolve, **extra)


def errors_of(text: str, **kwargs: Any) -> list[dict[str, str]]:
    with pytest.raises(PolicyConfigError) as info:
        parse_sla_config(text, **kwargs)
    return info.value.errors


# --- sla_config.yaml --------------------------------------------------------------------------


def test_seed_002_parses_to_the_expected_policies() -> None:
    config = parse_sla_config(SEED_002)

    def seed(tier: str, code: str, priority: str, start: int, resolve: int) -> PolicySpec:
        return PolicySpec(
            f"{tier.lower()}-{code}", "*", priority, tier, start, resolve, (85.0, 95.0)
        )

    expected = [
        PolicySpec(
            "enterprise-p0",
            "*",
            "CRITICAL",
            "ENTERPRISE",
            15,
            60,
            (85.0, 95.0),
            None,
            False,
            ((1, 10), (2, 20), (3, 30), (4, 45)),
            True,
        ),
        seed("ENTERPRISE", "p1", "HIGH", 60, 240),
        seed("ENTERPRISE", "p2", "MEDIUM", 240, 480),
        seed("ENTERPRISE", "p3", "LOW", 480, 1440),
        seed("PREMIUM", "p0", "CRITICAL", 30, 120),
        seed("PREMIUM", "p1", "HIGH", 120, 480),
        seed("PREMIUM", "p2", "MEDIUM", 360, 720),
        seed("PREMIUM", "p3", "LOW", 720, 1440),
        seed("STANDARD", "p1", "HIGH", 240, 720),
        seed("STANDARD", "p2", "MEDIUM", 480, 1440),
        seed("STANDARD", "p3", "LOW", 1440, 2880),
        seed("BASIC", "p2", "MEDIUM", 720, 1440),
        seed("BASIC", "p3", "LOW", 1440, 4320),
    ]
    assert config.policies == tuple(sorted(expected, key=lambda p: p.name))
    assert config.thresholds == (85.0, 95.0)
    assert config.escalation_levels == (
        (0, "No escalation"),
        (1, "Team lead notified"),
        (2, "Manager notified"),
        (4, "Director notified"),
        (5, "VP notified"),
    )
    assert config.calendars == ()
    assert config.default_calendar is None
    assert config.default_pause_on_blocked is False
    assert all(type(p.priority) is str and type(p.thresholds[0]) is float for p in expected)


def test_seed_002_round_trips_in_its_own_format() -> None:
    config = parse_sla_config(SEED_002)
    text = dump_sla_config(config)
    assert parse_sla_config(text) == config
    assert "opsflow" not in yaml.safe_load(text)  # nothing beyond the base format needed
    document = yaml.safe_load(text)
    assert document["alert_thresholds"] == {"warning": 15, "critical": 5}
    assert document["sla_targets"]["ENTERPRISE"]["P0"] == {
        "response_minutes": 15,
        "resolution_minutes": 60,
        "escalation": {"LEVEL_1": 10, "LEVEL_2": 20, "LEVEL_3": 30, "LEVEL_4": 45},
    }
    assert list(document["sla_targets"]) == ["ENTERPRISE", "PREMIUM", "STANDARD", "BASIC"]
    assert list(document["sla_targets"]["STANDARD"]) == ["P1", "P2", "P3"]
    assert document["escalation_levels"][4] == "Director notified"
    assert dump_sla_config(parse_sla_config(text)) == text


def test_seed_names_and_alternative_spellings() -> None:
    assert seed_policy_name("ENTERPRISE", "CRITICAL") == "enterprise-p0"
    assert seed_policy_name(CustomerTier.BASIC, Priority.LOW) == "basic-p3"
    text = """
sla_targets:
  standard:
    critical: {response_minutes: 5, resolution_minutes: 10}
    p3: {response_minutes: 50, resolution_minutes: 100}
"""
    config = parse_sla_config(text)
    assert [(p.name, p.priority, p.customer_tier) for p in config.policies] == [
        ("standard-p0", "CRITICAL", "STANDARD"),
        ("standard-p3", "LOW", "STANDARD"),
    ]
    assert config.thresholds == DEFAULT_THRESHOLDS  # no alert_thresholds: OpsFlow defaults


def test_missing_threshold_keys_take_the_defaults() -> None:
    config = parse_sla_config("alert_thresholds: {warning: 40}")
    assert config.thresholds == (60.0, 95.0)
    config = parse_sla_config("alert_thresholds: {critical: 10}")
    assert config.thresholds == (75.0, 90.0)
    config = parse_sla_config("alert_thresholds: {warning: 12.3456, critical: 0.0001}")
    assert config.thresholds == (87.6544, 99.9999)


def test_empty_sections_are_empty() -> None:
    config = parse_sla_config("sla_targets:\nalert_thresholds:\nescalation_levels:\nopsflow:\n")
    assert config == SlaConfig()
    assert parse_sla_config("sla_targets: {BASIC: }") == SlaConfig()


# --- the extension block --------------------------------------------------------------------


def test_extension_block() -> None:
    config = parse_sla_config(EXTENDED)
    assert config.calendars == (BUSINESS_HOURS,)
    assert config.default_calendar == "business-hours"
    assert config.default_pause_on_blocked is True
    assert config.thresholds == (80.0, 97.5)
    assert config.policies == (
        PolicySpec(
            "enterprise-p0",
            "*",
            "CRITICAL",
            "ENTERPRISE",
            15,
            60,
            (80.0, 97.5),
            "business-hours",
            True,
        ),
        PolicySpec(
            "incident-critical",
            "INCIDENT",
            "CRITICAL",
            "*",
            10,
            60,
            (50.0, 90.5),
            None,
            False,
            ((1, 5), (2, 15)),
        ),
        PolicySpec(
            "old-task",
            "TASK",
            "*",
            "BASIC",
            100,
            200,
            (80.0, 97.5),
            "business-hours",
            True,
            is_active=False,
        ),
        PolicySpec(
            "premium-p1", "*", "HIGH", "PREMIUM", 120, 480, (80.0, 97.5), "business-hours", True
        ),
    )
    assert config.calendar("business-hours") == BUSINESS_HOURS
    assert config.calendar(None) == BusinessCalendar.always()
    assert config.calendar("24x7") == BusinessCalendar.always()
    assert config.calendar("nope") is None
    assert config.policy("old-task") is not None
    assert config.policy("nope") is None


def test_extension_block_round_trips_and_is_written_only_when_needed() -> None:
    config = parse_sla_config(EXTENDED)
    text = dump_sla_config(config)
    assert parse_sla_config(text) == config
    document = yaml.safe_load(text)
    block = document["opsflow"]
    assert block["version"] == 1
    assert block["defaults"] == {"calendar": "business-hours", "pause_on_blocked": True}
    assert block["calendars"]["business-hours"] == {
        "timezone": "Europe/Paris",
        "hours": {
            "mon": ["09:00-17:00"],
            "tue": ["09:00-12:00", "13:00-17:00"],
            "sat": ["10:00-24:00"],
            "sun": [],
        },
        "holidays": ["2026-12-25", "2027-01-01"],
    }
    # seed-shaped policies stay in sla_targets, the others go to the extension block
    assert set(block["policies"]) == {"incident-critical", "old-task"}
    assert document["sla_targets"] == {
        "ENTERPRISE": {"P0": {"response_minutes": 15, "resolution_minutes": 60}},
        "PREMIUM": {"P1": {"response_minutes": 120, "resolution_minutes": 480}},
    }
    assert block["policies"]["incident-critical"]["calendar"] == "24x7"
    assert "mon: ['09:00-17:00']" in text  # hours on one line


def test_a_seed_entry_that_seed_002_cannot_describe_goes_to_the_extension() -> None:
    config = SlaConfig(
        policies=(
            spec("enterprise-p0", "*", "CRITICAL", "ENTERPRISE", pause_on_blocked=True),
            spec("premium-p0", "*", "CRITICAL", "PREMIUM", thresholds=(10.0, 20.0)),
            spec("basic-p0", "*", "CRITICAL", "BASIC", is_active=False),
            spec("gold", "*", "CRITICAL", "STANDARD"),
        )
    )
    text = dump_sla_config(config)
    document = yaml.safe_load(text)
    assert document["sla_targets"] == {}
    assert set(document["opsflow"]["policies"]) == {
        "enterprise-p0",
        "premium-p0",
        "basic-p0",
        "gold",
    }
    assert parse_sla_config(text) == config


def test_known_calendars_come_from_elsewhere() -> None:
    text = """
opsflow:
  policies:
    db: {response_minutes: 1, resolution_minutes: 2, calendar: from-db}
"""
    config = parse_sla_config(text, known_calendars={"from-db"})
    assert config.policies[0].calendar == "from-db"
    assert errors_of(text) == [
        {"path": "opsflow.policies.db.calendar", "message": "unknown calendar 'from-db'"}
    ]
    assert (
        parse_sla_config(
            dump_sla_config(config, known_calendars=["from-db"]), known_calendars=["from-db"]
        )
        == config
    )
    with pytest.raises(PolicyConfigError):
        dump_sla_config(config)


def test_24x7_names_the_built_in_calendar() -> None:
    assert spec("x", calendar="24x7").calendar is None
    config = parse_sla_config("opsflow: {defaults: {calendar: 24x7}}")
    assert config.default_calendar is None
    assert SlaConfig(default_calendar="24x7") == SlaConfig()


# --- matching -------------------------------------------------------------------------------


def test_most_specific_policy_wins() -> None:
    policies = [
        spec("any"),
        spec("critical", priority="CRITICAL"),
        spec("critical-enterprise", priority="CRITICAL", customer_tier="ENTERPRISE"),
        spec("all-three", "INCIDENT", "CRITICAL", "ENTERPRISE"),
    ]
    assert match(policies, "INCIDENT", "CRITICAL", "ENTERPRISE") == policies[3]
    assert match(policies, "TASK", "CRITICAL", "ENTERPRISE") == policies[2]
    assert match(policies, "TASK", "CRITICAL", "BASIC") == policies[1]
    assert match(policies, "TASK", "LOW", "BASIC") == policies[0]
    assert match(policies[1:], "TASK", "LOW", "BASIC") is None
    assert match([], "TASK", "LOW", "BASIC") is None


@pytest.mark.parametrize(
    ("a", "b", "winner"),
    [
        # equal specificity: priority beats tier beats task type
        (("*", "CRITICAL", "*"), ("INCIDENT", "*", "*"), 0),
        (("*", "CRITICAL", "*"), ("*", "*", "ENTERPRISE"), 0),
        (("*", "*", "ENTERPRISE"), ("INCIDENT", "*", "*"), 0),
        (("*", "CRITICAL", "ENTERPRISE"), ("INCIDENT", "CRITICAL", "*"), 0),
        (("INCIDENT", "CRITICAL", "*"), ("INCIDENT", "*", "ENTERPRISE"), 0),
        (("*", "CRITICAL", "ENTERPRISE"), ("INCIDENT", "*", "ENTERPRISE"), 0),
        # more specific fields always win
        (("INCIDENT", "*", "ENTERPRISE"), ("*", "CRITICAL", "*"), 0),
    ],
)
def test_tie_breaking_order(a: tuple[str, str, str], b: tuple[str, str, str], winner: int) -> None:
    first, second = spec("zz-a", *a), spec("aa-b", *b)
    expected = (first, second)[winner]
    assert match([first, second], "INCIDENT", "CRITICAL", "ENTERPRISE") == expected
    assert match([second, first], "INCIDENT", "CRITICAL", "ENTERPRISE") == expected


def test_identical_selectors_fall_back_to_the_name_and_inactive_policies_are_ignored() -> None:
    policies = [spec("b", priority="HIGH"), spec("a", priority="HIGH"), spec("c", priority="HIGH")]
    assert match(policies, "TASK", "HIGH", "BASIC") == policies[1]
    inactive = [spec("a", "TASK", "HIGH", "BASIC", is_active=False), spec("z", priority="HIGH")]
    assert match(inactive, "TASK", "HIGH", "BASIC") == inactive[1]
    assert match(inactive[:1], "TASK", "HIGH", "BASIC") is None


def test_matching_accepts_enum_members() -> None:
    policies = [spec("p", TaskType.INCIDENT, Priority.HIGH, CustomerTier.PREMIUM)]
    assert policies[0].task_type == "INCIDENT"
    assert type(policies[0].task_type) is str
    assert match(policies, TaskType.INCIDENT, Priority.HIGH, CustomerTier.PREMIUM) == policies[0]
    assert policies[0].specificity == 3
    assert spec("q").specificity == 0


def test_seed_002_matching() -> None:
    policies = parse_sla_config(SEED_002).policies
    found = match(policies, "TASK", "CRITICAL", "ENTERPRISE")
    assert found is not None
    assert found.name == "enterprise-p0"
    assert match(policies, "INCIDENT", "CRITICAL", "STANDARD") is None  # seed has no STANDARD P0


# --- targets --------------------------------------------------------------------------------


@pytest.mark.parametrize("priority", list(Priority))
def test_defaults_fill_in_when_nothing_matches(priority: Priority) -> None:
    start, resolve = PRIORITY_DEFAULTS[priority]
    assert resolve_targets([], "TASK", priority, "STANDARD") == (
        start,
        resolve,
        (75.0, 95.0),
        "default",
    )


def test_resolve_targets_from_a_policy() -> None:
    policies = parse_sla_config(SEED_002).policies
    result = resolve_targets(policies, TaskType.INCIDENT, Priority.HIGH, CustomerTier.PREMIUM)
    assert result == ResolvedTargets(120, 480, (85.0, 95.0), "policy:premium-p1")
    start, resolve, thresholds, source = result
    assert (start, resolve, thresholds, source) == (120, 480, (85.0, 95.0), "policy:premium-p1")
    # STANDARD has no P0 in the file: the built-in CRITICAL defaults
    assert resolve_targets(policies, "TASK", "CRITICAL", "STANDARD") == (
        60,
        240,
        (75.0, 95.0),
        "default",
    )
    with pytest.raises(ValueError, match="URGENT"):
        resolve_targets([], "TASK", "URGENT", "STANDARD")


# --- validation of the YAML -----------------------------------------------------------------

TARGET = "{response_minutes: 10, resolution_minutes: 20}"
CAL = "{timezone: UTC, hours: {mon: ['09:00-17:00']}}"


def _policy(**fields: str) -> str:
    body = ", ".join(
        f"{k}: {v}"
        for k, v in {"response_minutes": "1", "resolution_minutes": "2", **fields}.items()
    )
    return f"opsflow: {{calendars: {{cal: {CAL}}}, policies: {{pol: {{{body}}}}}}}"


def _calendar(body: str) -> str:
    return f"opsflow: {{calendars: {{cal: {body}}}}}"


def _hours(hours: str) -> str:
    return _calendar(f"{{timezone: UTC, hours: {hours}}}")


def _entry(body: str) -> str:
    return f"sla_targets: {{ENTERPRISE: {{P0: {body}}}}}"


E = "sla_targets.ENTERPRISE.P0"
P = "opsflow.policies.pol"
C = "opsflow.calendars.cal"

INVALID: list[tuple[str, str, str]] = [
    # the document
    ("", "", "empty"),
    ("~", "", "empty"),
    ("- a\n- b", "", "must be a mapping, got a list"),
    ("42", "", "must be a mapping"),
    ("'text'", "", "must be a mapping"),
    ("sla_targets: {\n  ENTERPRISE: [\n", "", "YAML error at line 3"),
    ("a: b: c", "", "YAML error at line 1"),
    (
        "sla_targets: {}\nsla_targets: {}\n",
        "",
        "line 2, column 1: while constructing a mapping; found duplicate key 'sla_targets'",
    ),
    ("holidays: 2026-02-30", "", "invalid YAML value"),
    ("x: !!python/object/apply:os.system ['true']", "", "YAML error"),
    ("--- {}\n--- {}\n", "", "YAML error"),
    ("[" * 20_000, "", "nested too deeply"),
    ("\x00", "", "YAML error"),
    ("foo: 1", "foo", "unknown key"),
    # sla_targets
    ("sla_targets: [1]", "sla_targets", "must be a mapping, got a list"),
    ("sla_targets: {GOLD: {}}", "sla_targets.GOLD", "unknown customer tier"),
    ("sla_targets: {1: {}}", "sla_targets.1", "unknown customer tier: the number 1"),
    ("sla_targets: {ENTERPRISE: {}, enterprise: {}}", "sla_targets.enterprise", "already given"),
    ("sla_targets: {BASIC: 3}", "sla_targets.BASIC", "must be a mapping"),
    (
        f"sla_targets: {{BASIC: {{P4: {TARGET}}}}}",
        "sla_targets.BASIC.P4",
        "unknown priority: the string 'P4'; expected one of: P0, P1, P2, P3 (or CRITICAL, HIGH",
    ),
    (
        f"sla_targets: {{BASIC: {{P0: {TARGET}, critical: {TARGET}}}}}",
        "sla_targets.BASIC.critical",
        "already given as 'P0'",
    ),
    (_entry("15"), E, "must be a mapping"),
    (_entry("{response_minute: 1, resolution_minutes: 2}"), f"{E}.response_minute", "unknown key"),
    (_entry("{response_minute: 1, resolution_minutes: 2}"), f"{E}.response_minutes", "is required"),
    (_entry("{response_minutes: 1}"), f"{E}.resolution_minutes", "is required"),
    (_entry("{response_minutes: 0, resolution_minutes: 2}"), f"{E}.response_minutes", "positive"),
    (_entry("{response_minutes: -5, resolution_minutes: 2}"), f"{E}.response_minutes", "positive"),
    (
        _entry("{response_minutes: 1.5, resolution_minutes: 2}"),
        f"{E}.response_minutes",
        "whole number",
    ),
    (
        _entry("{response_minutes: 15.0, resolution_minutes: 20}"),
        f"{E}.response_minutes",
        "whole number",
    ),
    (
        _entry("{response_minutes: '15', resolution_minutes: 20}"),
        f"{E}.response_minutes",
        "whole number",
    ),
    (
        _entry("{response_minutes: true, resolution_minutes: 20}"),
        f"{E}.response_minutes",
        "whole number",
    ),
    (
        _entry("{response_minutes: null, resolution_minutes: 20}"),
        f"{E}.response_minutes",
        "whole number",
    ),
    (
        _entry(f"{{response_minutes: 1, resolution_minutes: {MAX_SLA_MINUTES + 1}}}"),
        f"{E}.resolution_minutes",
        "at most 525600",
    ),
    (
        _entry(f"{{response_minutes: 1, resolution_minutes: {10**5000:#x}}}"),
        f"{E}.resolution_minutes",
        "a very large integer",
    ),
    (
        _entry("{response_minutes: 30, resolution_minutes: 20}"),
        f"{E}.response_minutes",
        "must not exceed resolution_minutes (20)",
    ),
    # escalation
    (
        _entry("{response_minutes: 1, resolution_minutes: 2, escalation: [10]}"),
        f"{E}.escalation",
        "must be a mapping",
    ),
    (
        _entry("{response_minutes: 1, resolution_minutes: 2, escalation: {LEVEL_0: 5}}"),
        f"{E}.escalation.LEVEL_0",
        "LEVEL_n, n >= 1",
    ),
    (
        _entry("{response_minutes: 1, resolution_minutes: 2, escalation: {L1: 5}}"),
        f"{E}.escalation.L1",
        "LEVEL_n",
    ),
    (
        _entry("{response_minutes: 1, resolution_minutes: 2, escalation: {1: 5}}"),
        f"{E}.escalation.1",
        "LEVEL_n",
    ),
    (
        _entry("{response_minutes: 1, resolution_minutes: 2, escalation: {LEVEL_1: 0}}"),
        f"{E}.escalation.LEVEL_1",
        "positive",
    ),
    (
        _entry("{response_minutes: 1, resolution_minutes: 2, escalation: {LEVEL_1: x}}"),
        f"{E}.escalation.LEVEL_1",
        "whole number",
    ),
    (
        _entry(
            "{response_minutes: 1, resolution_minutes: 2, escalation: {LEVEL_1: 9, level_1: 5}}"
        ),
        f"{E}.escalation.level_1",
        "more than once",
    ),
    (
        _entry(
            "{response_minutes: 1, resolution_minutes: 2, escalation: {LEVEL_2: 5, LEVEL_1: 9}}"
        ),
        f"{E}.escalation.LEVEL_2",
        "must not come before LEVEL_1 (9 min)",
    ),
    # alert_thresholds
    ("alert_thresholds: [15, 5]", "alert_thresholds", "must be a mapping"),
    ("alert_thresholds: {warning: 15, critcal: 5}", "alert_thresholds.critcal", "unknown key"),
    ("alert_thresholds: {warning: 0}", "alert_thresholds.warning", "strictly between 0 and 100"),
    ("alert_thresholds: {warning: 100}", "alert_thresholds.warning", "strictly between 0 and 100"),
    ("alert_thresholds: {warning: 150}", "alert_thresholds.warning", "strictly between 0 and 100"),
    ("alert_thresholds: {critical: -1}", "alert_thresholds.critical", "strictly between 0 and 100"),
    ("alert_thresholds: {warning: high}", "alert_thresholds.warning", "must be a percentage"),
    ("alert_thresholds: {warning: true}", "alert_thresholds.warning", "must be a percentage"),
    ("alert_thresholds: {warning: .nan}", "alert_thresholds.warning", "finite"),
    ("alert_thresholds: {warning: .inf}", "alert_thresholds.warning", "finite"),
    (
        "alert_thresholds: {warning: 12.34567}",
        "alert_thresholds.warning",
        "at most 4 decimal places",
    ),
    (
        "alert_thresholds: {warning: 5, critical: 15}",
        "alert_thresholds",
        "warning (5% remaining) must be more than critical (15% remaining)",
    ),
    (
        "alert_thresholds: {warning: 5, critical: 5}",
        "alert_thresholds",
        "must be more than critical",
    ),
    (
        "alert_thresholds: {warning: 4}",
        "alert_thresholds",
        "must be more than critical (5% remaining)",
    ),
    # escalation_levels
    ("escalation_levels: [a]", "escalation_levels", "must be a mapping"),
    ("escalation_levels: {-1: a}", "escalation_levels.-1", "whole number >= 0"),
    ("escalation_levels: {x: a}", "escalation_levels.x", "whole number >= 0"),
    ("escalation_levels: {1.5: a}", "escalation_levels.1.5", "whole number >= 0"),
    ("escalation_levels: {1: a, '1': b}", "escalation_levels.1", "more than once"),
    ("escalation_levels: {1: ''}", "escalation_levels.1", "printable"),
    ('escalation_levels: {1: "a\\nb"}', "escalation_levels.1", "printable"),
    ("escalation_levels: {1: 2}", "escalation_levels.1", "text label"),
    ("escalation_levels: {1: ~}", "escalation_levels.1", "text label"),
    (f"escalation_levels: {{1: {'x' * 201}}}", "escalation_levels.1", "1-200"),
    # the opsflow block
    ("opsflow: [1]", "opsflow", "must be a mapping"),
    ("opsflow: {policy: {}}", "opsflow.policy", "unknown key"),
    ("opsflow: {version: 2}", "opsflow.version", "only version 1"),
    ("opsflow: {version: '1'}", "opsflow.version", "only version 1"),
    ("opsflow: {defaults: 1}", "opsflow.defaults", "must be a mapping"),
    (
        "opsflow: {defaults: {calendar: nope}}",
        "opsflow.defaults.calendar",
        "unknown calendar 'nope'",
    ),
    ("opsflow: {defaults: {calendar: 7}}", "opsflow.defaults.calendar", "named by a string"),
    (
        "opsflow: {defaults: {pause_on_blocked: 'yes'}}",
        "opsflow.defaults.pause_on_blocked",
        "true or false",
    ),
    ("opsflow: {defaults: {timezone: UTC}}", "opsflow.defaults.timezone", "unknown key"),
    # calendars
    ("opsflow: {calendars: [1]}", "opsflow.calendars", "must be a mapping"),
    (
        f"opsflow: {{calendars: {{'bad name': {CAL}}}}}",
        "opsflow.calendars.bad name",
        "calendar name must be",
    ),
    (f"opsflow: {{calendars: {{7: {CAL}}}}}", "opsflow.calendars.7", "must be a string (quote it)"),
    (f"opsflow: {{calendars: {{24x7: {CAL}}}}}", "opsflow.calendars.24x7", "built in"),
    (_calendar("[1]"), C, "must be a mapping"),
    (_calendar("{hours: {mon: ['09:00-17:00']}}"), f"{C}.timezone", "is required"),
    (
        _calendar("{timezone: Mars/Olympus, hours: {mon: ['09:00-17:00']}}"),
        f"{C}.timezone",
        "unknown time zone 'Mars/Olympus'",
    ),
    (
        _calendar("{timezone: ../../etc/passwd, hours: {mon: ['09:00-17:00']}}"),
        f"{C}.timezone",
        "unknown time zone",
    ),
    (_calendar("{timezone: '', hours: {mon: ['09:00-17:00']}}"), f"{C}.timezone", "IANA time zone"),
    (_calendar("{timezone: 3, hours: {mon: ['09:00-17:00']}}"), f"{C}.timezone", "IANA time zone"),
    (_calendar("{timezone: UTC}"), f"{C}.hours", "is required"),
    (
        _calendar("{timezone: UTC, hours: {mon: ['09:00-17:00']}, color: red}"),
        f"{C}.color",
        "unknown key",
    ),
    (_hours("[mon]"), f"{C}.hours", "must be a mapping"),
    (_hours("{}"), f"{C}.hours", "at least one working interval"),
    (_hours("{mon: [], sat: ~}"), f"{C}.hours", "at least one working interval"),
    (_hours("{funday: ['09:00-17:00']}"), f"{C}.hours.funday", "unknown weekday"),
    (_hours("{0: ['09:00-17:00']}"), f"{C}.hours.0", "unknown weekday"),
    (
        _hours("{mon: ['09:00-17:00'], Monday: ['18:00-19:00']}"),
        f"{C}.hours.Monday",
        "more than once",
    ),
    (_hours("{mon: 9}"), f"{C}.hours.mon", "must be a list"),
    (_hours("{mon: ['9-5']}"), f"{C}.hours.mon[0]", "HH:MM-HH:MM"),
    (_hours("{mon: [540]}"), f"{C}.hours.mon[0]", "HH:MM-HH:MM"),
    (
        _hours("{mon: ['09:00-17:00', '25:00-26:00']}"),
        f"{C}.hours.mon[1]",
        "not a valid time of day",
    ),
    (_hours("{mon: ['09:60-17:00']}"), f"{C}.hours.mon[0]", "not a valid time of day"),
    (_hours("{mon: ['24:00-24:00']}"), f"{C}.hours.mon[0]", "not a valid time of day"),
    (_hours("{mon: ['17:00-09:00']}"), f"{C}.hours.mon[0]", "must end after it starts"),
    (_hours("{mon: ['09:00-09:00']}"), f"{C}.hours.mon[0]", "must end after it starts"),
    (
        _hours("{mon: ['09:00-12:00', '11:00-13:00']}"),
        f"{C}.hours.mon",
        "09:00-12:00 and 11:00-13:00 overlap",
    ),
    (_hours("{mon: ['12:00-24:00', '00:00-13:00']}"), f"{C}.hours.mon", "overlap"),
    (
        _calendar("{timezone: UTC, hours: {mon: ['09:00-17:00']}, holidays: 2026-12-25}"),
        f"{C}.holidays",
        "must be a list",
    ),
    (
        _calendar("{timezone: UTC, hours: {mon: ['09:00-17:00']}, holidays: ['2026-02-30']}"),
        f"{C}.holidays[0]",
        "ISO date",
    ),
    (
        _calendar("{timezone: UTC, hours: {mon: ['09:00-17:00']}, holidays: [x, tomorrow]}"),
        f"{C}.holidays[1]",
        "ISO date",
    ),
    (
        _calendar("{timezone: UTC, hours: {mon: ['09:00-17:00']}, holidays: ['20261225']}"),
        f"{C}.holidays[0]",
        "ISO date",
    ),
    (
        _calendar(
            "{timezone: UTC, hours: {mon: ['09:00-17:00']}, holidays: [2026-12-25 10:00:00]}"
        ),
        f"{C}.holidays[0]",
        "got a timestamp",
    ),
    # policies
    ("opsflow: {policies: [1]}", "opsflow.policies", "must be a mapping"),
    (f"opsflow: {{policies: {{-bad: {TARGET}}}}}", "opsflow.policies.-bad", "policy name must be"),
    (
        f"opsflow: {{policies: {{{'x' * 101}: {TARGET}}}}}",
        f"opsflow.policies.{'x' * 57}...",
        "policy name must be",
    ),
    (f"opsflow: {{policies: {{12: {TARGET}}}}}", "opsflow.policies.12", "quote it"),
    ("opsflow: {policies: {pol: 1}}", P, "must be a mapping"),
    (_policy(colour="red"), f"{P}.colour", "unknown key"),
    (
        _policy(task_type="BUG"),
        f"{P}.task_type",
        "unknown task_type: the string 'BUG'; expected one of",
    ),
    (_policy(task_type="1"), f"{P}.task_type", "unknown task_type: the number 1"),
    (_policy(priority="URGENT"), f"{P}.priority", "expected one of: P0, P1, P2, P3 (or"),
    (_policy(priority="P4"), f"{P}.priority", "unknown priority"),
    (_policy(customer_tier="GOLD"), f"{P}.customer_tier", "unknown customer_tier"),
    (_policy(response_minutes="0"), f"{P}.response_minutes", "positive"),
    (_policy(resolution_minutes="x"), f"{P}.resolution_minutes", "whole number"),
    (_policy(response_minutes="3"), f"{P}.response_minutes", "must not exceed"),
    (
        _policy(thresholds="[95, 75]"),
        f"{P}.thresholds",
        "warning (95% elapsed) must come before critical (75% elapsed)",
    ),
    (_policy(thresholds="[75]"), f"{P}.thresholds", "list of two percentages"),
    (_policy(thresholds="[75, 95, 99]"), f"{P}.thresholds", "list of two percentages"),
    (_policy(thresholds="75"), f"{P}.thresholds", "list of two percentages"),
    (_policy(thresholds="[0, 95]"), f"{P}.thresholds[0]", "strictly between"),
    (_policy(thresholds="[75, 100]"), f"{P}.thresholds[1]", "strictly between"),
    (_policy(thresholds="[75, x]"), f"{P}.thresholds[1]", "must be a percentage"),
    (_policy(calendar="nope"), f"{P}.calendar", "unknown calendar 'nope'"),
    (_policy(calendar="[cal]"), f"{P}.calendar", "named by a string"),
    (_policy(pause_on_blocked="1"), f"{P}.pause_on_blocked", "true or false"),
    (_policy(is_active="'true'"), f"{P}.is_active", "true or false"),
    (_policy(escalation="{LEVEL_1: -1}"), f"{P}.escalation.LEVEL_1", "positive"),
    # uniqueness
    (
        f"sla_targets: {{ENTERPRISE: {{P0: {TARGET}}}}}\n"
        "opsflow: {policies: {enterprise-p0: {priority: LOW, "
        "response_minutes: 1, resolution_minutes: 2}}}",
        "opsflow.policies.enterprise-p0",
        "already used by sla_targets.ENTERPRISE.P0",
    ),
    (
        f"sla_targets: {{ENTERPRISE: {{P0: {TARGET}}}}}\n"
        "opsflow: {policies: {x: {priority: P0, customer_tier: enterprise, "
        "response_minutes: 1, resolution_minutes: 2}}}",
        "opsflow.policies.x",
        "sla_targets.ENTERPRISE.P0 already applies to "
        "task_type=*, priority=CRITICAL, customer_tier=ENTERPRISE",
    ),
    (
        f"opsflow: {{policies: {{a: {TARGET}, b: {TARGET}}}}}",
        "opsflow.policies.b",
        "at most one active policy per selector",
    ),
]


@pytest.mark.parametrize(("text", "path", "fragment"), INVALID)
def test_invalid_documents(text: str, path: str, fragment: str) -> None:
    errors = errors_of(text)
    assert any(e["path"] == path and fragment in e["message"] for e in errors), errors


def test_inactive_policies_may_share_a_selector() -> None:
    text = (
        f"opsflow: {{policies: {{a: {TARGET}, "
        "b: {is_active: false, response_minutes: 1, resolution_minutes: 2}}}"
    )
    assert len(parse_sla_config(text).policies) == 2


def test_every_error_is_reported_at_once() -> None:
    text = """
sla_targets:
  GOLD: {}
  ENTERPRISE:
    P0: {response_minutes: 0, resolution_minutes: 1.5}
    P9: {}
alert_thresholds: {warning: 150}
escalation_levels: {x: y}
opsflow:
  calendars:
    c: {timezone: Nowhere/Land, hours: {mon: ['9-5']}}
  policies:
    p: {task_type: BUG, response_minutes: 1, resolution_minutes: 2, calendar: c}
"""
    paths = [e["path"] for e in errors_of(text)]
    assert paths == [
        "alert_thresholds.warning",
        "escalation_levels.x",
        "opsflow.calendars.c.timezone",
        "opsflow.calendars.c.hours.mon[0]",
        "opsflow.policies.p.task_type",
        "sla_targets.GOLD",
        "sla_targets.ENTERPRISE.P0.response_minutes",
        "sla_targets.ENTERPRISE.P0.resolution_minutes",
        "sla_targets.ENTERPRISE.P9",
    ]


def test_an_invalid_calendar_is_not_also_reported_as_unknown() -> None:
    text = """
opsflow:
  defaults: {calendar: c}
  calendars:
    c: {timezone: Nowhere/Land, hours: {mon: ['09:00-17:00']}}
  policies:
    p: {response_minutes: 1, resolution_minutes: 2, calendar: c}
"""
    assert [e["path"] for e in errors_of(text)] == ["opsflow.calendars.c.timezone"]


def test_documents_over_one_mebibyte_are_refused() -> None:
    padding = "#" * MAX_DOCUMENT_BYTES
    assert errors_of(f"sla_targets: {{}}\n{padding}") == [
        {"path": "", "message": f"the document is larger than {MAX_DOCUMENT_BYTES} bytes"}
    ]
    # measured in UTF-8 bytes, not characters
    wide = "#" + "é" * (MAX_DOCUMENT_BYTES // 2)
    assert "larger than" in errors_of(wide)[0]["message"]
    assert parse_sla_config("sla_targets: {}\n#" + "x" * 1000) == SlaConfig()


def test_non_text_input_is_a_config_error() -> None:
    with pytest.raises(PolicyConfigError, match="must be text"):
        parse_sla_config(b"sla_targets: {}")  # type: ignore[arg-type]


def test_the_error_type() -> None:
    error = PolicyConfigError([{"path": "a", "message": "b"}] * 500)
    assert isinstance(error, ValueError)
    assert len(error.errors) == 201
    assert error.errors[-1] == {"path": "", "message": "... and 300 more"}
    assert str(error).startswith("invalid SLA configuration (201 errors): a: b; a: b")
    assert PolicyConfigError([]).errors == [{"path": "", "message": "invalid SLA configuration"}]


def test_alias_bombs_stay_cheap() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 30)]
    errors = errors_of("\n".join(lines))
    assert len(errors) == 30
    assert all(e["message"].startswith("unknown key") for e in errors)
    text = "sla_targets: {ENTERPRISE: {P0: {response_minutes: &b [[1]], resolution_minutes: *b}}}"
    assert len(errors_of(text)) == 2


def test_merge_keys_work_and_do_not_count_as_duplicates() -> None:
    text = """
base: &base {response_minutes: 10, resolution_minutes: 20}
"""
    assert errors_of(text)[0]["path"] == "base"
    text = """
sla_targets:
  ENTERPRISE:
    P0: &base {response_minutes: 10, resolution_minutes: 20}
    P1: {<<: *base, resolution_minutes: 30}
"""
    config = parse_sla_config(text)
    assert [(p.start_minutes, p.resolve_minutes) for p in config.policies] == [(10, 20), (10, 30)]


# --- validation of configurations built in code ---------------------------------------------


VALID_CALENDAR = BusinessCalendar.weekly("biz", "UTC", time(9), time(17))

CODE_INVALID: list[tuple[SlaConfig, str, str]] = [
    (SlaConfig(policies=(spec(""),)), "policies.", "policy name must be"),
    (SlaConfig(policies=(spec(7),)), "policies[0]", "policy name must be a string"),  # type: ignore[arg-type]
    (
        SlaConfig(policies=(spec("a", task_type="BUG"),)),
        "policies.a.task_type",
        "must be one of INCIDENT, TASK, *",
    ),
    (SlaConfig(policies=(spec("a", priority="P0"),)), "policies.a.priority", "must be one of"),
    (
        SlaConfig(policies=(spec("a", customer_tier="gold"),)),
        "policies.a.customer_tier",
        "must be one of",
    ),
    (SlaConfig(policies=(spec("a", start=0),)), "policies.a.start_minutes", "positive"),
    (SlaConfig(policies=(spec("a", resolve=True),)), "policies.a.resolve_minutes", "whole number"),
    (
        SlaConfig(policies=(spec("a", start=200, resolve=100),)),
        "policies.a.start_minutes",
        "must not exceed resolve_minutes (100)",
    ),
    (
        SlaConfig(policies=(spec("a", thresholds=(95.0, 75.0)),)),
        "policies.a.thresholds",
        "must come before",
    ),
    (
        SlaConfig(policies=(spec("a", thresholds=(75.0,)),)),
        "policies.a.thresholds",
        "two percentages",
    ),
    (
        SlaConfig(policies=(spec("a", thresholds=(75.00001, 95.0)),)),
        "policies.a.thresholds[0]",
        "4 decimal places",
    ),
    (SlaConfig(policies=(spec("a", thresholds="75"),)), "policies.a.thresholds", "two percentages"),
    (SlaConfig(policies=(spec("a", calendar="nope"),)), "policies.a.calendar", "unknown calendar"),
    (
        SlaConfig(policies=(spec("a", pause_on_blocked=1),)),
        "policies.a.pause_on_blocked",
        "true or false",
    ),
    (SlaConfig(policies=(spec("a", is_active=None),)), "policies.a.is_active", "true or false"),
    (
        SlaConfig(policies=(spec("a", escalation=((0, 5),)),)),
        "policies.a.escalation[0]",
        "level must be a whole number >= 1",
    ),
    (
        SlaConfig(policies=(spec("a", escalation=((1, 0),)),)),
        "policies.a.escalation[0]",
        "positive",
    ),
    (
        SlaConfig(policies=(spec("a", escalation=((1,),)),)),
        "policies.a.escalation[0]",
        "(level, minutes) pair",
    ),
    (
        SlaConfig(policies=(spec("a", escalation=((1, 5), (1, 6))),)),
        "policies.a.escalation[1]",
        "more than once",
    ),
    (
        SlaConfig(policies=(spec("a", escalation=((2, 5), (1, 6))),)),
        "policies.a.escalation[1]",
        "must not come before LEVEL_1",
    ),
    (
        SlaConfig(policies=(spec("a", escalation=(("x", 5), (1, 6))),)),
        "policies.a.escalation[0]",
        "level must be",
    ),
    (SlaConfig(policies=(spec("a", escalation=5),)), "policies.a.escalation", "tuple of"),
    (
        SlaConfig(policies=(spec("a"), spec("a", priority="LOW"))),
        "policies.a",
        "used more than once",
    ),
    (SlaConfig(policies=(spec("a"), spec("b"))), "policies.b", "policies.a already applies"),
    (SlaConfig(policies=("a",)), "policies[0]", "must be a PolicySpec"),  # type: ignore[arg-type]
    (SlaConfig(thresholds=(95.0, 95.0)), "thresholds", "must come before"),
    (SlaConfig(thresholds=(float("nan"), 95.0)), "thresholds[0]", "finite"),
    (SlaConfig(escalation_levels=((1, "a"), (1, "b"))), "escalation_levels[1]", "more than once"),
    (SlaConfig(escalation_levels=((-1, "a"),)), "escalation_levels[0]", ">= 0"),
    (SlaConfig(escalation_levels=((1, ""),)), "escalation_levels[0]", "printable"),
    (SlaConfig(escalation_levels=((1,),)), "escalation_levels[0]", "(level, label) pair"),  # type: ignore[arg-type]
    (SlaConfig(default_calendar="nope"), "default_calendar", "unknown calendar"),
    (SlaConfig(default_pause_on_blocked="no"), "default_pause_on_blocked", "true or false"),  # type: ignore[arg-type]
    (SlaConfig(calendars=(VALID_CALENDAR, VALID_CALENDAR)), "calendars.biz", "more than once"),
    (SlaConfig(calendars=(BusinessCalendar.always(),)), "calendars.24x7", "built in"),
    (
        SlaConfig(calendars=(BusinessCalendar("bad name", "UTC", {0: ((time(9), time(10)),)}),)),
        "calendars.bad name",
        "calendar name must be",
    ),
    (
        SlaConfig(calendars=(BusinessCalendar("idle", "UTC", {0: ()}),)),
        "calendars.idle.hours",
        "at least one",
    ),
    (
        SlaConfig(
            calendars=(BusinessCalendar("fine", "UTC", {0: ((time(9, 0, 0, 5), time(10)),)}),)
        ),
        "calendars.fine.hours.mon",
        "whole seconds",
    ),
    (SlaConfig(calendars=("cal",)), "calendars[0]", "must be a BusinessCalendar"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("config", "path", "fragment"), CODE_INVALID)
def test_invalid_configs_built_in_code(config: SlaConfig, path: str, fragment: str) -> None:
    with pytest.raises(PolicyConfigError) as info:
        validate_config(config)
    assert any(e["path"] == path and fragment in e["message"] for e in info.value.errors), (
        info.value.errors
    )
    with pytest.raises(PolicyConfigError):
        dump_sla_config(config)


def test_validate_config_accepts_valid_configs() -> None:
    validate_config(parse_sla_config(SEED_002))
    validate_config(parse_sla_config(EXTENDED))
    validate_config(SlaConfig(policies=(spec("a", calendar="db"),)), known_calendars={"db"})
    with pytest.raises(PolicyConfigError, match="must be an SlaConfig"):
        validate_config("config")  # type: ignore[arg-type]


# --- diffs ----------------------------------------------------------------------------------


def test_diff_configs() -> None:
    old = parse_sla_config(SEED_002)
    assert diff_configs(old, old) == []
    new_text = (
        SEED_002.replace("response_minutes: 15", "response_minutes: 20")
        .replace("warning: 15", "warning: 20")
        .replace('  5: "VP notified"\n', "")
        .replace("    P3:\n      response_minutes: 1440\n      resolution_minutes: 4320\n", "")
        + "opsflow:\n  calendars:\n    biz: {timezone: UTC, hours: {mon: ['09:00-17:00']}}\n"
        + "  policies:\n    outage: {task_type: INCIDENT, response_minutes: 5, "
        + "resolution_minutes: 30, calendar: biz}\n"
    )
    new = parse_sla_config(new_text)
    changes = diff_configs(old, new)
    by_name = {(c["kind"], c["name"]): c for c in changes}
    assert by_name[("policy", "enterprise-p0")] == {
        "kind": "policy",
        "name": "enterprise-p0",
        "change": "changed",
        "changes": {
            "start_minutes": {"from": 15, "to": 20},
            "thresholds": {"from": [85.0, 95.0], "to": [80.0, 95.0]},
        },
    }
    assert by_name[("policy", "basic-p3")] == {
        "kind": "policy",
        "name": "basic-p3",
        "change": "removed",
        "old": policy_to_dict(old.policy("basic-p3")),  # type: ignore[arg-type]
    }
    assert by_name[("policy", "outage")]["change"] == "added"
    assert by_name[("policy", "outage")]["new"]["calendar"] == "biz"
    assert by_name[("calendar", "biz")] == {
        "kind": "calendar",
        "name": "biz",
        "change": "added",
        "new": {
            "name": "biz",
            "timezone": "UTC",
            "hours": {"mon": ["09:00-17:00"]},
            "holidays": [],
        },
    }
    assert by_name[("settings", "config")]["changes"] == {
        "thresholds": {"from": [85.0, 95.0], "to": [80.0, 95.0]},
        "escalation_levels": {
            "from": {
                "0": "No escalation",
                "1": "Team lead notified",
                "2": "Manager notified",
                "4": "Director notified",
                "5": "VP notified",
            },
            "to": {
                "0": "No escalation",
                "1": "Team lead notified",
                "2": "Manager notified",
                "4": "Director notified",
            },
        },
    }
    # every policy whose thresholds moved is reported (all seed entries), in name order
    kinds = [c["kind"] for c in changes]
    assert kinds == sorted(kinds, key=["policy", "calendar", "settings"].index)
    names = [c["name"] for c in changes if c["kind"] == "policy"]
    assert names == sorted(names)
    assert len(names) == 14
    assert diff_configs(new, old)[0]["name"] == "basic-p2"
    assert calendar_to_dict(BUSINESS_HOURS)["hours"]["sat"] == ["10:00-24:00"]


# --- properties -----------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,12}", fullmatch=True)
PERCENTS = st.integers(1, 999_999).map(lambda n: n / 10_000)
PAIRS = st.lists(PERCENTS, min_size=2, max_size=2, unique=True).map(lambda p: (min(p), max(p)))
MINUTES = st.integers(1, MAX_SLA_MINUTES)
LABELS = st.text(min_size=1, max_size=30).filter(str.isprintable)


@st.composite
def calendars(draw: st.DrawFn, name: str) -> BusinessCalendar:
    hours: dict[int, tuple[tuple[time, time], ...]] = {}
    step = draw(st.sampled_from([1, 60, 900]))
    for weekday in draw(st.lists(st.integers(0, 6), unique=True, min_size=1, max_size=7)):
        points = sorted(
            draw(
                st.lists(
                    st.integers(0, 86_400 // step).map(lambda n: n * step),
                    unique=True,
                    max_size=6,
                )
            )
        )
        points = points[: len(points) // 2 * 2]
        intervals = []
        for start, end in zip(points[::2], points[1::2], strict=True):
            intervals.append((_clock(start), _clock(end % 86_400)))
        hours[weekday] = tuple(intervals)
    if not any(hours.values()):
        hours[0] = ((time(9), time(17)),)
    holidays = draw(st.frozensets(st.dates(date(2000, 1, 1), date(2100, 12, 31)), max_size=3))
    return BusinessCalendar(name, draw(st.sampled_from(ZONES)), hours, holidays)


def _clock(seconds: int) -> time:
    return time(seconds // 3600, seconds // 60 % 60, seconds % 60)


@st.composite
def escalations(draw: st.DrawFn) -> tuple[tuple[int, int], ...]:
    levels = sorted(draw(st.sets(st.integers(1, 12), max_size=4)))
    minutes = sorted(draw(st.lists(MINUTES, min_size=len(levels), max_size=len(levels))))
    return tuple(zip(levels, minutes, strict=True))


@st.composite
def configs(draw: st.DrawFn) -> SlaConfig:
    calendar_names = draw(
        st.lists(NAMES.filter(lambda n: n.lower() != "24x7"), unique=True, max_size=3)
    )
    calendar_list = [draw(calendars(name)) for name in calendar_names]
    calendar_choice = st.sampled_from([None, *calendar_names])
    thresholds = draw(PAIRS)
    default_calendar = draw(calendar_choice)
    default_pause = draw(st.booleans())
    policies: list[PolicySpec] = []
    names: set[str] = set()
    selectors: set[tuple[str, str, str]] = set()

    def add(policy: PolicySpec) -> None:
        if policy.name in names or (policy.is_active and policy.selector in selectors):
            return
        names.add(policy.name)
        if policy.is_active:
            selectors.add(policy.selector)
        policies.append(policy)

    slots = st.tuples(st.sampled_from(list(CustomerTier)), st.sampled_from(list(Priority)))
    for tier, priority in draw(st.lists(slots, unique=True, max_size=6)):
        start, resolve = sorted(draw(st.lists(MINUTES, min_size=2, max_size=2)))
        add(
            PolicySpec(
                seed_policy_name(tier, priority),
                "*",
                priority,
                tier,
                start,
                resolve,
                thresholds,
                default_calendar,
                default_pause,
                draw(escalations()),
            )
        )
    for _ in range(draw(st.integers(0, 5))):
        start, resolve = sorted(draw(st.lists(MINUTES, min_size=2, max_size=2)))
        tier = draw(st.sampled_from(["*", *CustomerTier]))
        priority = draw(st.sampled_from(["*", *Priority]))
        add(
            PolicySpec(
                draw(st.one_of(NAMES, st.just(seed_policy_name(CustomerTier.BASIC, "LOW")))),
                draw(st.sampled_from(["*", *TaskType])),
                priority,
                tier,
                start,
                resolve,
                draw(st.one_of(st.just(thresholds), PAIRS)),
                draw(calendar_choice),
                draw(st.booleans()),
                draw(escalations()),
                draw(st.booleans()),
            )
        )
    levels = draw(st.dictionaries(st.integers(0, 20), LABELS, max_size=4))
    return SlaConfig(
        policies=tuple(policies),
        calendars=tuple(calendar_list),
        thresholds=thresholds,
        escalation_levels=tuple(levels.items()),
        default_calendar=default_calendar,
        default_pause_on_blocked=default_pause,
    )


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(configs())
def test_dump_then_parse_is_the_identity(config: SlaConfig) -> None:
    validate_config(config)
    text = dump_sla_config(config)
    parsed = parse_sla_config(text)
    assert parsed == config
    assert dump_sla_config(parsed) == text
    assert diff_configs(config, parsed) == []


def _outcome(text: str) -> SlaConfig | PolicyConfigError:
    try:
        return parse_sla_config(text)
    except PolicyConfigError as error:
        return error


def _check_outcome(text: str) -> None:
    """Only PolicyConfigError (well-formed, no internal error) or a valid config."""
    outcome = _outcome(text)
    if isinstance(outcome, PolicyConfigError):
        assert outcome.errors
        for entry in outcome.errors:
            assert set(entry) == {"path", "message"}
            assert isinstance(entry["path"], str)
            assert isinstance(entry["message"], str)
            assert "internal error" not in entry["message"]
            assert len(entry["message"]) < 1000
    else:
        validate_config(outcome)
        assert parse_sla_config(dump_sla_config(outcome)) == outcome


YAML_ALPHABET = st.sampled_from(
    [*":-[]{}&*!|>'\"%@`#,?. \n\t~", "a", "1", "P0", "sla_targets", "\n  ", "<<"]
)


@PROPERTY
@given(st.one_of(st.text(), st.lists(YAML_ALPHABET).map("".join)))
def test_random_text_gives_a_config_or_a_config_error(text: str) -> None:
    _check_outcome(text)


VOCABULARY = [
    "sla_targets", "alert_thresholds", "escalation_levels", "opsflow", "ENTERPRISE", "premium",
    "Basic", "P0", "p3", "CRITICAL", "response_minutes", "resolution_minutes", "escalation",
    "LEVEL_1", "level_2", "warning", "critical", "version", "defaults", "calendars", "policies",
    "calendar", "pause_on_blocked", "timezone", "hours", "holidays", "mon", "Sunday", "task_type",
    "priority", "customer_tier", "thresholds", "is_active", "*", "24x7", "Europe/Paris", "biz",
    "09:00-17:00", "24:00-01:00", "2026-12-25", "INCIDENT", "x",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-2, 600_000),
    st.floats(),
    st.text(max_size=12),
    st.dates(),
    st.sampled_from(VOCABULARY),
)
KEYS = st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=8), st.integers(-3, 30))
TREES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)
    ),
    max_leaves=25,
)


@PROPERTY
@given(st.dictionaries(st.sampled_from(VOCABULARY[:4]), TREES, max_size=4) | TREES)
def test_random_structures_give_a_config_or_a_config_error(document: Any) -> None:
    _check_outcome(yaml.safe_dump(document, allow_unicode=True))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@PROPERTY
@given(configs(), st.data())
def test_mutated_valid_documents_give_a_config_or_a_config_error(
    config: SlaConfig, data: st.DataObject
) -> None:
    document = yaml.safe_load(dump_sla_config(config))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(document)[1:]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(TREES)
    _check_outcome(yaml.safe_dump(document, allow_unicode=True))
