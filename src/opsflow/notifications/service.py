"""Notification rules: which events reach whom on which channel, as rows to deliver.

The outbox relay hands every event to `consume`, in the relay's transaction. The rules:

* `escalation.fired` — each recipient of the step, on each of the step's channels;
* `sla.warning` / `sla.critical` / `sla.breach` (only the one the engine marked `notify`)
  — the task's assignees, by e-mail;
* `task.created` / `task.assigned` — the assignees, by e-mail; `task.completed` — the
  creator, by e-mail;
* `comment.created` / `comment.updated` — the users the change newly mentions (`notify`,
  already limited to those who may read the comment), by e-mail, and on Slack for those who
  set a Slack preference; the text is the `comment.mentioned` template.

One event reaches one person on one channel once: when an escalation policy handles the
event (`task.created`, `sla.warning`, `sla.breach`) and one of its steps due at that instant
pages someone on a channel, the built-in message of the event leaves that person and channel
out (the step's message is the page).

A user's preference for a channel can switch it off or give its address (an
e-mail address, a Slack incoming-webhook URL, a phone number). Each row's `dedup_key` is
source event x recipient x channel and unique, so a redelivered event queues nothing twice.
Messages are rendered when the row is created (what was sent is what the row shows).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.permissions import Permission, reach_allows, require_reach
from opsflow.auth.principal import Principal
from opsflow.errors import Conflict, NotFound, ValidationFailed
from opsflow.escalation import service as escalation
from opsflow.events.changes import record_change
from opsflow.events.entities import Entity
from opsflow.kit.jsonable import to_jsonable
from opsflow.kit.validation import patch_fields
from opsflow.models.enums import Channel, NotificationStatus
from opsflow.models.notification import MaintenanceWindow, Notification, NotificationTemplate
from opsflow.models.outbox import OutboxEvent
from opsflow.models.user import User
from opsflow.notifications import repository
from opsflow.notifications.backoff import MAX_ATTEMPTS
from opsflow.notifications.facts import message_context
from opsflow.notifications.schemas import TemplateRead, WindowCreate, WindowUpdate
from opsflow.notifications.templates import (
    NotificationTemplates,
    TemplateError,
    default_source,
    template_names,
)
from opsflow.observability import tracing

_CHANNELS = {
    "email": Channel.EMAIL,
    "slack": Channel.SLACK,
    "sms": Channel.SMS,
    "webhook": Channel.WEBHOOK,
}
_TEMPLATES = NotificationTemplates()
# Comment changes notify the people they mention, with the mention's text.
MENTION_EVENTS = {"comment.created": "comment.mentioned", "comment.updated": "comment.mentioned"}
SLA_EVENTS = frozenset({"sla.warning", "sla.critical", "sla.breach"})
# Events of a task that reach its people (`_wanted`).
TASK_EVENTS = SLA_EVENTS | {"task.created", "task.assigned", "task.completed"}
# Every event type that can reach anyone: the relay hands the consumer every event, and
# most (a task started, edited, commented without a mention...) reach nobody; those
# return before anything is read.
NOTIFYING = TASK_EVENTS | MENTION_EVENTS.keys() | {"escalation.fired"}


@dataclass(frozen=True)
class Wanted:
    user_id: uuid.UUID
    channel: Channel


def _ids(values: Iterable[Any]) -> list[uuid.UUID]:
    result = []
    for value in values:
        try:
            result.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    return result


async def _wanted(session: AsyncSession, event: OutboxEvent) -> list[Wanted]:
    payload: dict[str, Any] = event.payload or {}
    kind = event.event_type
    if kind == "escalation.fired":
        users = _ids(r.get("id") for r in payload.get("recipients", []))
        channels = [_CHANNELS[c] for c in payload.get("channels", []) if c in _CHANNELS]
        return [Wanted(u, c) for u in users for c in channels]
    if kind in MENTION_EVENTS:
        users = _ids(payload.get("notify", []))
        preferences = await repository.preferences(session, users)
        slack = [u for u in users if (u, Channel.SLACK.value) in preferences]
        return [Wanted(u, Channel.EMAIL) for u in users] + [Wanted(u, Channel.SLACK) for u in slack]
    if event.aggregate_type != "task":
        return []
    task = await repository.task(session, event.aggregate_id)
    if task is None:
        return []
    if kind in SLA_EVENTS:
        if not payload.get("notify", True):
            return []
        return [Wanted(u, Channel.EMAIL) for u in await repository.assignees(session, task)]
    if kind in ("task.created", "task.assigned"):
        # Whoever is given the task hears about it (created unassigned: nobody).
        return [Wanted(u, Channel.EMAIL) for u in await repository.assignees(session, task)]
    if kind == "task.completed":
        return [Wanted(task.created_by, Channel.EMAIL)]
    return []


def quiet_until(
    start: str | None, end: str | None, zone: str | None, now: datetime
) -> datetime | None:
    """When the quiet hours around `now` end (local `HH:MM`, may span midnight), or None
    when `now` is not inside them. A critical page is not exempt: people who set quiet
    hours on a channel rely on them; escalation steps reach other people and channels."""
    if not start or not end or start == end:
        return None
    try:
        local = now.astimezone(ZoneInfo(zone or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        local = now.astimezone(UTC)
    begin_t, end_t = time.fromisoformat(start), time.fromisoformat(end)
    today = local.replace(second=0, microsecond=0)
    clock = local.time()
    if begin_t < end_t:
        inside = begin_t <= clock < end_t
        ends = today.replace(hour=end_t.hour, minute=end_t.minute)
    else:  # spans midnight, e.g. 22:00-07:00
        inside = clock >= begin_t or clock < end_t
        ends = today.replace(hour=end_t.hour, minute=end_t.minute)
        if clock >= begin_t:
            ends += timedelta(days=1)
    return ends.astimezone(UTC) if inside else None


def _address(user: User, channel: Channel, preference: Any) -> str | None:
    if preference is not None and preference.address:
        return str(preference.address)
    return user.email if channel is Channel.EMAIL else None


async def prepare(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    """The relay's preparer for this consumer: the people of the tasks whose events of the
    batch may reach them (creators, assignees) with their preferences, and the rows the
    batch's events already have (a redelivery), read for the whole batch in three
    statements instead of a few per event."""
    tasks = []
    for event in events:
        if event.event_type in TASK_EVENTS and event.aggregate_type == "task":
            task = await repository.task(session, event.aggregate_id)
            if task is not None:
                tasks.append(task)
    await repository.prepare_people(session, list({task.id: task for task in tasks}.values()))
    await repository.prepare_existing(
        session, [event.id for event in events if event.event_type in NOTIFYING]
    )


async def consume(session: AsyncSession, event: OutboxEvent, now: datetime) -> None:
    """The relay's notification consumer: one row per wanted recipient x channel."""
    if event.event_type not in NOTIFYING:
        return
    wanted = list(dict.fromkeys(await _wanted(session, event)))
    if wanted and event.event_type != "escalation.fired":
        # An escalation policy that handles this event pages these people at once itself.
        paged = {
            Wanted(user_id, _CHANNELS[channel])
            for user_id, channel in await escalation.immediate_pages(session, event)
            if channel in _CHANNELS
        }
        wanted = [w for w in wanted if w not in paged]
    if not wanted:
        return
    users = {u.id: u for u in await repository.users(session, [w.user_id for w in wanted])}
    preferences = await repository.preferences(session, list(users))
    keys = {w: f"{event.id}:{w.user_id}:{w.channel.value}" for w in wanted}
    existing = await repository.existing_keys(session, list(keys.values()), event.id)
    payload: dict[str, Any] = event.payload or {}
    task_id = (
        event.aggregate_id if event.aggregate_type == "task" else _uuid(payload.get("task_id"))
    )
    edited = await overrides(session)
    for item in wanted:
        user = users.get(item.user_id)
        preference = preferences.get((item.user_id, item.channel.value))
        if user is None or keys[item] in existing:
            continue
        if preference is not None and not preference.enabled:
            continue
        context = await message_context(session, event, user, preference)
        subject, body, html, message_payload, template, error = None, "", None, {}, None, None
        try:
            rendered = _TEMPLATES.render(
                MENTION_EVENTS.get(event.event_type, event.event_type),
                item.channel,
                context,
                edited,
                fallback=True,
            )
            subject, body, html = rendered.subject, rendered.body, rendered.html
            message_payload, template = dict(rendered.payload), rendered.template
        except TemplateError as exc:  # recorded on the row; delivery still has the event
            error = f"template: {exc}"
            message_payload = dict(payload)
        session.add(
            Notification(
                id=uuid.uuid4(),
                task_id=task_id,
                sla_event_id=_uuid(payload.get("sla_event_id") or payload.get("event_id")),
                escalation_event_id=_uuid(payload.get("escalation_event_id")),
                source_event_id=event.id,
                notification_type=event.event_type,
                channel=item.channel.value,
                recipient_id=user.id,
                recipient=user.username,
                address=_address(user, item.channel, preference),
                subject=subject,
                body=body,
                html_body=html,
                payload=message_payload,
                template=template,
                status=NotificationStatus.PENDING,
                attempts=0,
                max_attempts=MAX_ATTEMPTS,
                scheduled_at=(
                    quiet_until(
                        preference.quiet_hours_start,
                        preference.quiet_hours_end,
                        preference.timezone,
                        now,
                    )
                    if preference is not None
                    else None
                )
                or now,
                error_message=error,
                attempt_log=[],
                dedup_key=keys[item],
                trace_context=tracing.traceparent(),
                created_at=now,
                updated_at=now,
            )
        )
    await session.flush()


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


# --- reading and retrying ---------------------------------------------------------------


async def get_visible(
    session: AsyncSession, actor: Principal, notification_id: uuid.UUID
) -> Notification:
    """One notification, if the caller may see it (all: admin, manager; own: developer,
    support). Others' rows answer 404, not 403: their existence is not the caller's."""
    reach = require_reach(actor, Permission.NOTIFICATIONS_READ)
    row = await repository.get(session, notification_id)
    if row is None or not reach_allows(actor, reach, owner_id=row.recipient_id):
        raise NotFound("notification", notification_id)
    return row


async def retry(
    session: AsyncSession, actor: Principal, notification_id: uuid.UUID, now: datetime
) -> Notification:
    """DEAD or FAILED -> PENDING with a fresh set of attempts, due now (audited)."""
    row = await repository.get(session, notification_id, for_update=True)
    if row is None:
        raise NotFound("notification", notification_id)
    if row.status not in (NotificationStatus.DEAD, NotificationStatus.FAILED):
        raise Conflict(
            f"Only DEAD or FAILED notifications can be retried, this one is {row.status}",
            status=row.status,
        )
    before = row.status
    row.status = NotificationStatus.PENDING
    row.attempts = 0
    row.scheduled_at = now
    row.updated_at = now
    record_change(
        session,
        actor,
        entity_type="notification",
        entity_id=row.id,
        action="NOTIFICATION_RETRIED",
        event_type="notification.retried",
        payload={"notification_id": row.id, "channel": row.channel, "recipient": row.recipient},
        now=now,
        changes={"status": {"from": before, "to": NotificationStatus.PENDING}},
    )
    return row


# --- templates ----------------------------------------------------------------------------


async def overrides(session: AsyncSession) -> dict[str, str]:
    """Every user-edited template part, by name (a small table, read per event)."""
    return {row.name: row.source for row in await repository.templates(session)}


def _template_read(name: str, row: NotificationTemplate | None) -> TemplateRead:
    try:
        default = default_source(name)
    except ValueError as exc:
        raise NotFound("notification_template", name) from exc
    return TemplateRead(
        name=name,
        source=row.source if row else default,
        default_source=default,
        overridden=row is not None,
        updated_at=row.updated_at if row else None,
    )


async def list_templates(session: AsyncSession) -> list[TemplateRead]:
    stored = {row.name: row for row in await repository.templates(session)}
    names = sorted(set(template_names()) | set(stored))
    return [_template_read(name, stored.get(name)) for name in names]


async def get_template(session: AsyncSession, name: str) -> TemplateRead:
    return _template_read(name, await session.get(NotificationTemplate, name))


async def put_template(
    session: AsyncSession, actor: Principal, name: str, source: str | None, now: datetime
) -> TemplateRead:
    """Save (validated against a sample context first) or, with None, reset to built-in."""
    current = _template_read(name, await session.get(NotificationTemplate, name))
    row = await session.get(NotificationTemplate, name, with_for_update=True)
    if source is None:
        if row is not None:
            await session.delete(row)
    else:
        problems = _TEMPLATES.validate(source, name)
        if problems:
            raise ValidationFailed(
                "The template does not render",
                details=[{"field": "source", "message": p} for p in problems],
            )
        if row is None:
            row = NotificationTemplate(name=name, source=source, updated_at=now)
            session.add(row)
        row.source, row.updated_at, row.updated_by = source, now, actor.user_id
    record_change(
        session,
        actor,
        entity_type="notification_template",
        entity_id=uuid.uuid5(uuid.NAMESPACE_URL, f"opsflow:template:{name}"),
        action="NOTIFICATION_TEMPLATE_UPDATED",
        event_type="notification_template.updated",
        payload={"name": name, "reset": source is None},
        now=now,
        changes={"source": {"from": current.source, "to": source or current.default_source}},
        metadata={"name": name},
    )
    await session.flush()
    return _template_read(name, row if source is not None else None)


# --- maintenance windows ----------------------------------------------------------------

MAX_WINDOW = timedelta(days=31)
WINDOW = "maintenance_window"


def _window_state(row: MaintenanceWindow) -> dict[str, Any]:
    return to_jsonable(  # type: ignore[no-any-return]
        {
            "name": row.name,
            "description": row.description,
            "starts_at": row.starts_at,
            "ends_at": row.ends_at,
            "conditions": row.conditions,
            "on_end": row.on_end,
        }
    )


def _check_window(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise ValidationFailed(details=[{"field": "ends_at", "message": "must be after starts_at"}])
    if ends_at - starts_at > MAX_WINDOW:
        raise ValidationFailed(details=[{"field": "ends_at", "message": "at most 31 days long"}])


WINDOWS = Entity(WINDOW, MaintenanceWindow, _window_state)


async def get_window(session: AsyncSession, window_id: uuid.UUID) -> MaintenanceWindow:
    return await WINDOWS.get(session, window_id)


async def create_window(
    session: AsyncSession, actor: Principal, data: WindowCreate, now: datetime
) -> MaintenanceWindow:
    _check_window(data.starts_at, data.ends_at)
    row = MaintenanceWindow(
        id=uuid.uuid4(),
        name=data.name,
        description=data.description,
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        conditions=data.conditions.given(),
        on_end=data.on_end,
        created_by=actor.user_id,
        created_at=now,
        updated_at=now,
    )
    return await WINDOWS.create(session, actor, row, now)


async def update_window(
    session: AsyncSession,
    actor: Principal,
    window_id: uuid.UUID,
    data: WindowUpdate,
    now: datetime,
) -> MaintenanceWindow:
    row = await get_window(session, window_id)
    fields = patch_fields(data, nullable={"description"})
    before = _window_state(row)
    for key, value in fields.items():
        if key == "conditions":
            assert data.conditions is not None
            value = data.conditions.given()
        setattr(row, key, value)
    _check_window(row.starts_at, row.ends_at)
    WINDOWS.updated(session, actor, row, before, now)
    return row


async def delete_window(
    session: AsyncSession, actor: Principal, window_id: uuid.UUID, now: datetime
) -> None:
    """Held notifications are then released at their next look (their window is gone)."""
    await WINDOWS.delete(session, actor, window_id, now)


# Reads with no rule beyond their query: the repository's functions, as this service's API
# (endpoints call services only).
all_windows = repository.all_windows
search = repository.search
