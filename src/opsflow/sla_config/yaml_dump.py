"""Writing an SLA configuration in the ``sla_config.yaml`` format (``sla_config.yaml_format``).

``dump_sla_config`` writes the ``sla_config.yaml`` format; a policy goes in ``sla_targets``
when that format can say everything about it (task_type ``*``, concrete priority and tier,
the canonical name, the file's thresholds and defaults, active), otherwise in
``opsflow.policies`` with every field spelled out.
``parse_sla_config(dump_sla_config(c)) == c`` for every valid ``c`` (``SlaConfig`` keeps
policies and calendars sorted by name, so order does not matter).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import yaml
from yaml.nodes import SequenceNode

from opsflow.models.enums import CustomerTier
from opsflow.sla.calendar import ALWAYS_NAME, BusinessCalendar
from opsflow.sla.calendar_format import WEEKDAYS, format_interval
from opsflow.sla.config_errors import number
from opsflow.sla.policies import PRIORITY_CODES, WILDCARD, PolicySpec
from opsflow.sla_config.model import SlaConfig
from opsflow.sla_config.validation import PRIORITIES, THRESHOLD_DECIMALS, TIERS, validate_config
from opsflow.sla_config.yaml_format import EXTENSION_KEY, EXTENSION_VERSION, seed_policy_name


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
        and spec.priority in PRIORITIES
        and spec.customer_tier in TIERS
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
            WEEKDAYS[weekday]: _FlowList(format_interval(iv) for iv in intervals)
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
        "thresholds": _FlowList(number(v) for v in spec.thresholds),
        "calendar": spec.calendar or ALWAYS_NAME,
        "pause_on_blocked": spec.pause_on_blocked,
    }
    if spec.escalation:
        result["escalation"] = _escalation_yaml(spec.escalation)
    result["is_active"] = spec.is_active
    return result


_HEADER = """\
# SLA configuration (sla_config.yaml format), written by OpsFlow.
# alert_thresholds are percent of the time REMAINING; the opsflow block, when present,
# holds what the base format cannot say (see opsflow.sla_config.yaml_format).
"""


def dump_sla_config(config: SlaConfig, *, known_calendars: Collection[str] = ()) -> str:
    """Write ``config`` as ``sla_config.yaml`` (plus the ``opsflow`` block only when needed).

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
            "warning": number(round(100 - warning, THRESHOLD_DECIMALS)),
            "critical": number(round(100 - critical, THRESHOLD_DECIMALS)),
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
