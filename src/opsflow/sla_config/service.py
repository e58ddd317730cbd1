"""SLA policies, business calendars and the file-wide SLA settings as one configuration.

Every change — an API call, a YAML import, a hot reload of ``OPSFLOW_SLA_CONFIG`` — goes the
same way: lock the settings row (serialises configuration changes across processes), build
the configuration as it would be after the change (pure ``sla_config.model.SlaConfig``),
validate it as a whole (one active policy per selector, calendars that exist, ...), write
the rows, reschedule the open clocks of a changed calendar, and record an audit row and
an outbox event per changed policy, calendar or setting. Validation happens before any
write, so a rejected change leaves nothing behind.

Policies apply when a task is created or its priority, tier or type changes (the clocks
keep what they were set up with); calendars apply to every clock still counting under them.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.principal import Principal
from opsflow.errors import Conflict, NotFound, ValidationFailed
from opsflow.events.changes import record_entity_change
from opsflow.kit.jsonable import to_jsonable
from opsflow.kit.validation import patch_fields
from opsflow.models.sla import BusinessCalendarRow, SlaPolicyRow, SlaSettingsRow
from opsflow.sla import repository
from opsflow.sla import service as sla_service
from opsflow.sla.calendar import ALWAYS_NAME, BusinessCalendar
from opsflow.sla.calendar_format import calendar_from_dict, calendar_to_dict
from opsflow.sla.clocks import DEFAULT_THRESHOLDS
from opsflow.sla.config_errors import PolicyConfigError
from opsflow.sla.policies import PolicySpec
from opsflow.sla_config.diff import diff_configs, policy_to_dict
from opsflow.sla_config.model import SlaConfig
from opsflow.sla_config.schemas import (
    CalendarCreate,
    CalendarUpdate,
    PolicyCreate,
    PolicyUpdate,
)
from opsflow.sla_config.validation import validate_config
from opsflow.sla_config.yaml_dump import dump_sla_config
from opsflow.sla_config.yaml_format import parse_sla_config

SETTINGS_ENTITY_ID = uuid.uuid5(uuid.NAMESPACE_URL, "opsflow:sla-settings")
SOURCE_API, SOURCE_IMPORT, SOURCE_FILE = "api", "import", "file"


@dataclass
class Stored:
    """The configuration as stored, with the rows it came from."""

    config: SlaConfig
    policies: dict[str, SlaPolicyRow]
    calendars: dict[str, BusinessCalendarRow]
    settings: SlaSettingsRow


def _calendar_body(row: BusinessCalendarRow) -> dict[str, Any]:
    return sla_service.calendar_body(row.timezone, row.hours, row.holidays)


async def load(session: AsyncSession, *, lock: bool = False) -> Stored:
    """The stored configuration. ``lock``: hold the settings row until the commit."""
    settings = await repository.settings_row(session, for_update=lock)
    calendars = {row.name: row for row in await repository.all_calendars(session)}
    names = {row.id: row.name for row in calendars.values()}
    policies = {row.name: row for row in await repository.all_policies(session)}
    config = SlaConfig(
        policies=tuple(
            sla_service.policy_spec(row, names.get(row.calendar_id) if row.calendar_id else None)
            for row in policies.values()
        ),
        calendars=tuple(
            calendar_from_dict(row.name, _calendar_body(row)) for row in calendars.values()
        ),
        thresholds=tuple(settings.thresholds),
        escalation_levels=tuple(
            (int(level), str(label)) for level, label in settings.escalation_levels
        ),
        default_calendar=settings.default_calendar,
        default_pause_on_blocked=settings.default_pause_on_blocked,
    )
    return Stored(config, policies, calendars, settings)


def guard_not_file_managed(config_path: object) -> None:
    if config_path is not None:
        raise Conflict(
            "SLA policies and calendars are managed by the file named in OPSFLOW_SLA_CONFIG; "
            "edit that file instead",
            config_file=str(config_path),
        )


def validation_error(error: PolicyConfigError, prefix: str = "") -> ValidationFailed:
    """A configuration's problems as the envelope's field details (paths relative to
    ``prefix`` when they start with it)."""
    details = []
    for entry in error.errors:
        path = entry["path"]
        if prefix and path.startswith(prefix):
            path = path[len(prefix) :]
        details.append({"field": path or "body", "message": entry["message"]})
    return ValidationFailed("Invalid SLA configuration", details=details)


def _validated(config: SlaConfig, prefix: str = "") -> SlaConfig:
    try:
        validate_config(config)
    except PolicyConfigError as exc:
        raise validation_error(exc, prefix) from exc
    return config


# --- writing rows ---------------------------------------------------------------------------


def _write_policy(
    row: SlaPolicyRow,
    spec: PolicySpec,
    calendars: Mapping[str, BusinessCalendarRow],
    source: str,
    now: datetime,
) -> None:
    row.name = spec.name
    row.task_type = spec.task_type
    row.priority = spec.priority
    row.customer_tier = spec.customer_tier
    row.start_minutes = spec.start_minutes
    row.resolve_minutes = spec.resolve_minutes
    row.thresholds = list(spec.thresholds)
    row.calendar_id = calendars[spec.calendar].id if spec.calendar else None
    row.pause_on_blocked = spec.pause_on_blocked
    row.escalation = [[level, minutes] for level, minutes in spec.escalation]
    row.is_active = spec.is_active
    row.source = source
    row.updated_at = now


def _write_calendar(
    row: BusinessCalendarRow, calendar: BusinessCalendar, source: str, now: datetime
) -> None:
    body = calendar_to_dict(calendar)
    row.name = calendar.name
    row.timezone = body["timezone"]
    row.hours = body["hours"]
    row.holidays = body["holidays"]
    row.source = source
    row.updated_at = now


def _audit(
    session: AsyncSession,
    actor: Principal,
    *,
    kind: str,
    entity_id: uuid.UUID,
    change: str,
    now: datetime,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    metadata: dict[str, Any],
) -> None:
    entity = {"policy": "sla_policy", "calendar": "business_calendar", "settings": "sla_settings"}
    verb = {"added": "CREATED", "changed": "UPDATED", "removed": "DELETED"}[change]
    record_entity_change(
        session,
        actor,
        entity_type=entity[kind],
        entity_id=entity_id,
        verb=verb,
        now=now,
        old=old,
        new=new,
        metadata=metadata,
    )


def _bump(session: AsyncSession, stored: Stored, now: datetime) -> int:
    sla_service.config_changed(session)
    stored.settings.revision += 1
    stored.settings.updated_at = now
    return stored.settings.revision


async def _change(
    session: AsyncSession,
    actor: Principal,
    stored: Stored,
    now: datetime,
    row: SlaPolicyRow | BusinessCalendarRow,
    old: PolicySpec | BusinessCalendar | None,
    new: PolicySpec | BusinessCalendar | None,
) -> None:
    """One policy or calendar created (``old`` None), edited, or deleted (``new`` None)
    through the API, once the configuration it makes is validated: the row is written, the
    open clocks of an edited calendar move with it, the configuration's revision moves on
    and the change is audited. Nothing happens when ``new`` equals ``old``."""
    if new == old:
        return
    extra: dict[str, Any] = {}
    if new is None:
        await session.delete(row)
    elif isinstance(row, SlaPolicyRow):
        assert isinstance(new, PolicySpec)
        _write_policy(row, new, stored.calendars, SOURCE_API, now)
    else:
        assert isinstance(new, BusinessCalendar)
        _write_calendar(row, new, SOURCE_API, now)
    if old is None:
        session.add(row)
        await session.flush()
    elif isinstance(old, BusinessCalendar) and isinstance(row, BusinessCalendarRow) and new:
        if new.name != old.name and stored.settings.default_calendar == old.name:
            stored.settings.default_calendar = new.name
        extra["clocks_rescheduled"] = await sla_service.reschedule_calendar(
            session, row.id, new.name, _calendar_body(row)
        )
    revision = _bump(session, stored, now)
    _audit(
        session,
        actor,
        kind="policy" if isinstance(row, SlaPolicyRow) else "calendar",
        entity_id=row.id,
        change="added" if old is None else "removed" if new is None else "changed",
        now=now,
        old=_as_dict(old),
        new=_as_dict(new),
        metadata={"source": SOURCE_API, "revision": revision, **extra},
    )


def _as_dict(value: PolicySpec | BusinessCalendar | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return policy_to_dict(value) if isinstance(value, PolicySpec) else calendar_to_dict(value)


# --- policies ---------------------------------------------------------------------------------


def _policy_spec_from(data: PolicyCreate) -> PolicySpec:
    return PolicySpec(
        name=data.name,
        task_type=data.task_type,
        priority=data.priority,
        customer_tier=data.customer_tier,
        start_minutes=data.start_minutes,
        resolve_minutes=data.resolve_minutes,
        thresholds=tuple(data.thresholds) if data.thresholds else DEFAULT_THRESHOLDS,
        calendar=data.calendar,
        pause_on_blocked=data.pause_on_blocked,
        escalation=tuple((e.level, e.minutes) for e in data.escalation),
        is_active=data.is_active,
    )


def _replace_policy(config: SlaConfig, old_name: str | None, spec: PolicySpec | None) -> SlaConfig:
    policies = [p for p in config.policies if p.name != old_name]
    if spec is not None:
        policies.append(spec)
    return dataclasses.replace(config, policies=tuple(policies))


async def get_policy(session: AsyncSession, policy_id: uuid.UUID) -> SlaPolicyRow:
    row = await repository.get_policy(session, policy_id)
    if row is None:
        raise NotFound("sla_policy", policy_id)
    return row


async def create_policy(
    session: AsyncSession, actor: Principal, data: PolicyCreate, now: datetime
) -> SlaPolicyRow:
    stored = await load(session, lock=True)
    if data.name in stored.policies:
        raise Conflict(f"An SLA policy named '{data.name}' already exists")
    spec = _policy_spec_from(data)
    _validated(_replace_policy(stored.config, None, spec), f"policies.{spec.name}.")
    row = SlaPolicyRow(id=uuid.uuid4(), created_at=now)
    await _change(session, actor, stored, now, row, None, spec)
    return row


async def update_policy(
    session: AsyncSession, actor: Principal, policy_id: uuid.UUID, data: PolicyUpdate, now: datetime
) -> SlaPolicyRow:
    stored = await load(session, lock=True)
    row = await get_policy(session, policy_id)
    fields = patch_fields(data, nullable={"calendar"})
    old_spec = next(p for p in stored.config.policies if p.name == row.name)
    changes: dict[str, Any] = {
        k: v for k, v in fields.items() if k not in ("thresholds", "escalation")
    }
    if "thresholds" in fields:
        changes["thresholds"] = tuple(fields["thresholds"])
    if "escalation" in fields:
        changes["escalation"] = tuple((e["level"], e["minutes"]) for e in fields["escalation"])
    spec = dataclasses.replace(old_spec, **changes)
    if spec.name != row.name and spec.name in stored.policies:
        raise Conflict(f"An SLA policy named '{spec.name}' already exists")
    _validated(_replace_policy(stored.config, row.name, spec), f"policies.{spec.name}.")
    await _change(session, actor, stored, now, row, old_spec, spec)
    return row


async def delete_policy(
    session: AsyncSession, actor: Principal, policy_id: uuid.UUID, now: datetime
) -> None:
    stored = await load(session, lock=True)
    row = await get_policy(session, policy_id)
    old_spec = next(p for p in stored.config.policies if p.name == row.name)
    await _change(session, actor, stored, now, row, old_spec, None)


# --- calendars --------------------------------------------------------------------------------


def _parse_calendar(name: str, body: dict[str, Any]) -> BusinessCalendar:
    try:
        return calendar_from_dict(name, body)
    except PolicyConfigError as exc:
        raise validation_error(exc) from exc


def _calendar_input(data: CalendarCreate | CalendarUpdate, base: dict[str, Any]) -> dict[str, Any]:
    body = dict(base)
    for key, value in patch_fields(data, exclude={"name"}).items():
        body[key] = [d.isoformat() for d in value] if key == "holidays" else value
    return body


async def get_calendar(session: AsyncSession, calendar_id: uuid.UUID) -> BusinessCalendarRow:
    row = await repository.get_calendar(session, calendar_id)
    if row is None:
        raise NotFound("calendar", calendar_id)
    return row


def _with_calendar(config: SlaConfig, old_name: str | None, new: BusinessCalendar) -> SlaConfig:
    calendars = [c for c in config.calendars if c.name != old_name]
    calendars.append(new)
    policies = tuple(
        dataclasses.replace(p, calendar=new.name) if old_name and p.calendar == old_name else p
        for p in config.policies
    )
    default = new.name if old_name and config.default_calendar == old_name else None
    return dataclasses.replace(
        config,
        calendars=tuple(calendars),
        policies=policies,
        default_calendar=default or config.default_calendar,
    )


async def create_calendar(
    session: AsyncSession, actor: Principal, data: CalendarCreate, now: datetime
) -> BusinessCalendarRow:
    stored = await load(session, lock=True)
    if data.name.lower() == ALWAYS_NAME:
        raise ValidationFailed(details=[{"field": "name", "message": "24x7 is built in"}])
    if data.name in stored.calendars:
        raise Conflict(f"A calendar named '{data.name}' already exists")
    calendar = _parse_calendar(data.name, _calendar_input(data, {}))
    _validated(_with_calendar(stored.config, None, calendar))
    row = BusinessCalendarRow(id=uuid.uuid4(), created_at=now)
    await _change(session, actor, stored, now, row, None, calendar)
    return row


async def update_calendar(
    session: AsyncSession,
    actor: Principal,
    calendar_id: uuid.UUID,
    data: CalendarUpdate,
    now: datetime,
) -> BusinessCalendarRow:
    stored = await load(session, lock=True)
    row = await get_calendar(session, calendar_id)
    name = data.name if data.name is not None else row.name
    if name.lower() == ALWAYS_NAME:
        raise ValidationFailed(details=[{"field": "name", "message": "24x7 is built in"}])
    if name != row.name and name in stored.calendars:
        raise Conflict(f"A calendar named '{name}' already exists")
    old = calendar_from_dict(row.name, _calendar_body(row))
    calendar = _parse_calendar(name, _calendar_input(data, _calendar_body(row)))
    _validated(_with_calendar(stored.config, row.name, calendar))
    await _change(session, actor, stored, now, row, old, calendar)
    return row


async def delete_calendar(
    session: AsyncSession, actor: Principal, calendar_id: uuid.UUID, now: datetime
) -> None:
    stored = await load(session, lock=True)
    row = await get_calendar(session, calendar_id)
    users = await repository.policies_using_calendar(session, row.id)
    if users or stored.settings.default_calendar == row.name:
        raise Conflict(
            f"Calendar '{row.name}' is still in use",
            policies=[p.name for p in users],
            default_calendar=stored.settings.default_calendar == row.name,
        )
    # Clocks counting under it keep their copy of the calendar (calendar_id becomes NULL).
    old = calendar_from_dict(row.name, _calendar_body(row))
    await _change(session, actor, stored, now, row, old, None)


# --- whole configurations: import, export, hot reload --------------------------------------


def parse(text: str) -> SlaConfig:
    try:
        return parse_sla_config(text)
    except PolicyConfigError as exc:
        raise validation_error(exc) from exc


def _merged(old: SlaConfig, new: SlaConfig) -> SlaConfig:
    """``new`` laid over ``old``: same-named policies and calendars replaced, others kept."""
    policies = {p.name: p for p in old.policies} | {p.name: p for p in new.policies}
    calendars = {c.name: c for c in old.calendars} | {c.name: c for c in new.calendars}
    return dataclasses.replace(
        new, policies=tuple(policies.values()), calendars=tuple(calendars.values())
    )


@dataclass(frozen=True)
class Applied:
    changes: list[dict[str, Any]]
    revision: int
    policies: int
    calendars: int


async def apply_config(
    session: AsyncSession,
    actor: Principal,
    new: SlaConfig,
    now: datetime,
    *,
    mode: str = "replace",
    source: str = SOURCE_IMPORT,
    dry_run: bool = False,
    origin: str | None = None,
) -> Applied:
    """Make the stored configuration ``new`` (``replace``) or ``new`` over it (``merge``)."""
    stored = await load(session, lock=not dry_run)
    target = _validated(_merged(stored.config, new) if mode == "merge" else new)
    entries = diff_configs(stored.config, target)
    counts = (len(target.policies), len(target.calendars))
    if dry_run or not entries:
        return Applied(entries, stored.settings.revision, *counts)
    revision = _bump(session, stored, now)
    metadata: dict[str, Any] = {"source": source, "revision": revision}
    if origin:
        metadata["file"] = origin
    calendars = dict(stored.calendars)
    ids: dict[tuple[str, str], uuid.UUID] = {}
    changed = {(e["kind"], e["name"]): e["change"] for e in entries}
    for calendar in target.calendars:
        change = changed.get(("calendar", calendar.name))
        if change is None:
            continue
        row = calendars.get(calendar.name)
        if row is None:
            row = BusinessCalendarRow(id=uuid.uuid4(), created_at=now)
            session.add(row)
            calendars[calendar.name] = row
        _write_calendar(row, calendar, source, now)
        ids["calendar", calendar.name] = row.id
    await session.flush()
    for policy in target.policies:
        change = changed.get(("policy", policy.name))
        if change is None:
            continue
        policy_row = stored.policies.get(policy.name)
        if policy_row is None:
            policy_row = SlaPolicyRow(id=uuid.uuid4(), created_at=now)
            session.add(policy_row)
        _write_policy(policy_row, policy, calendars, source, now)
        ids["policy", policy.name] = policy_row.id
    for entry in entries:
        if entry["kind"] == "policy" and entry["change"] == "removed":
            ids["policy", entry["name"]] = stored.policies[entry["name"]].id
            await session.delete(stored.policies[entry["name"]])
    await session.flush()
    for entry in entries:
        if entry["kind"] != "calendar":
            continue
        row = calendars[entry["name"]]
        ids["calendar", entry["name"]] = row.id
        if entry["change"] == "removed":
            await session.delete(row)
        elif entry["change"] == "changed":
            moved = await sla_service.reschedule_calendar(
                session, row.id, row.name, _calendar_body(row)
            )
            entry["clocks_rescheduled"] = moved
    settings = stored.settings
    settings.thresholds = list(target.thresholds)
    settings.escalation_levels = [[level, label] for level, label in target.escalation_levels]
    settings.default_calendar = target.default_calendar
    settings.default_pause_on_blocked = target.default_pause_on_blocked
    for entry in entries:
        kind, name = entry["kind"], entry["name"]
        old, new_state = entry.get("old"), entry.get("new")
        if entry["change"] == "changed":
            old = {k: v["from"] for k, v in entry["changes"].items()} | {"name": name}
            new_state = {k: v["to"] for k, v in entry["changes"].items()} | {"name": name}
        _audit(
            session,
            actor,
            kind=kind,
            entity_id=ids.get((kind, name), SETTINGS_ENTITY_ID),
            change=entry["change"],
            now=now,
            old=old,
            new=new_state,
            metadata={
                **metadata,
                **(
                    {"clocks_rescheduled": entry["clocks_rescheduled"]}
                    if "clocks_rescheduled" in entry
                    else {}
                ),
            },
        )
    return Applied(to_jsonable(entries), revision, *counts)


async def export_yaml(session: AsyncSession) -> str:
    return dump_sla_config((await load(session)).config)


# Reads with no rule beyond their query (endpoints call services only).
all_calendars = repository.all_calendars
all_policies = repository.all_policies
policies_using_calendar = repository.policies_using_calendar
