"""What changed between two SLA configurations, for the audit log of an import or a reload."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opsflow.kit.changes import field_changes
from opsflow.sla.calendar_format import calendar_to_dict
from opsflow.sla.policies import PolicySpec
from opsflow.sla_config.model import SlaConfig


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


def _settings_dict(config: SlaConfig) -> dict[str, Any]:
    return {
        "thresholds": list(config.thresholds),
        "escalation_levels": {str(level): label for level, label in config.escalation_levels},
        "default_calendar": config.default_calendar,
        "default_pause_on_blocked": config.default_pause_on_blocked,
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
            changes = field_changes(old[name], new[name])
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
    changes = field_changes(_settings_dict(old), _settings_dict(new))
    if changes:
        entries.append(
            {"kind": "settings", "name": "config", "change": "changed", "changes": changes}
        )
    return entries
