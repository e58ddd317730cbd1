"""The notification consumer is cheap per event and queues what it always queued.

Events that reach nobody (a task started, acknowledged, blocked...) return before anything
is read. A relay pass reads the people of its batch's tasks, their preferences, the rows
its events already have and the template overrides once (`notifications.service.prepare`,
`db.shared`), where each event used to read them again. What it queues is the same as
when each event reads for itself: the same rows, texts, addresses, channels, times and
dedup keys, and a redelivered batch queues nothing twice; a change of a template or a
preference committed between two passes is seen by the second.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import delete, select, update

from opsflow.clock import SettableClock
from opsflow.composition import engine_registry
from opsflow.context import AppContext
from opsflow.events.relay import RelayEngine
from opsflow.models.notification import Notification
from opsflow.models.outbox import OutboxEvent
from opsflow.notifications import service as notifications
from tests.api.statement_support import selects_from, statements
from tests.factories import T0, make_task, make_team, make_user

# Everything a row says, without its own id (the rows of two passes are compared).
FIELDS = (
    "dedup_key", "source_event_id", "notification_type", "channel", "recipient_id",
    "recipient", "address", "subject", "body", "html_body", "payload", "template",
    "task_id", "sla_event_id", "escalation_event_id", "status", "scheduled_at",
    "error_message", "created_at",
)  # fmt: skip
# The event types the notification rules name (the service's docstring); every other
# event reaches nobody.
NOTIFYING = {
    "task.created", "task.assigned", "task.completed", "comment.created", "comment.updated",
    "escalation.fired", "sla.warning", "sla.critical", "sla.breach",
}  # fmt: skip
QUIET_EMAIL = {
    "channel": "EMAIL",
    "enabled": True,
    "quiet_hours_start": "10:00",
    "quiet_hours_end": "11:00",
    "timezone": "UTC",
}


async def _rows(ctx: AppContext) -> dict[str, tuple[Any, ...]]:
    """The people's notification rows (not webhook deliveries), by dedup key."""
    async with ctx.sessions() as session:
        rows = await session.scalars(select(Notification).where(Notification.webhook_id.is_(None)))
        return {row.dedup_key: tuple(getattr(row, name) for name in FIELDS) for row in rows}


async def _unpublish(ctx: AppContext) -> None:
    """Every outbox event due again, as after a crash before the relay's commit."""
    async with ctx.sessions() as session, session.begin():
        await session.execute(
            update(OutboxEvent).values(published_at=None, attempts=0, available_at=T0)
        )


async def _world(
    client: httpx.AsyncClient, admin_headers: dict[str, str], ctx: AppContext
) -> dict[str, Any]:
    """Events of every kind that notifies, and of kinds that do not, waiting in the outbox:
    tasks created with assignees (one escalation policy pages one of them at once), one
    assigned later, a mention, SLA thresholds, a manual escalation, a task acknowledged,
    started and completed; preferences with quiet hours, a Slack address, e-mail switched off; an
    edited template."""
    team = await make_team(client, admin_headers)
    dev = await make_user(client, admin_headers, "developer", team_id=team)
    support = await make_user(client, admin_headers, "support", team_id=team)
    manager = await make_user(client, admin_headers, "manager", team_id=team)
    preferences = [
        (dev, [QUIET_EMAIL, {"channel": "SLACK", "address": "http://127.0.0.1:9/slack-dev"}]),
        (support, [{"channel": "EMAIL", "enabled": False}]),
    ]
    for who, items in preferences:
        response = await client.put(
            "/users/me/notification-preferences", json={"preferences": items}, headers=who.headers
        )
        assert response.status_code == 200, response.text
    policy = {
        "name": "manager-first",
        "conditions": {"priority": ["CRITICAL"]},
        "trigger": "created",
        "steps": [{"delay_minutes": 0, "targets": [f"user:{manager.id}"], "channels": ["email"]}],
    }
    response = await client.post("/escalation-policies", json=policy, headers=admin_headers)
    assert response.status_code == 201, response.text
    response = await client.put(
        "/notification-templates/task.created.email.subject",
        json={"source": "New for {{ recipient.name }}: {{ task.title }}"},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    incident = {"task_type": "INCIDENT", "start_sla_minutes": 15, "resolve_sla_minutes": 120}
    first = await make_task(
        client,
        admin_headers,
        title="Checkout down",
        priority="CRITICAL",
        assigned_to=dev.id,
        additional_assignees=[support.id, manager.id],
        team_id=team,
        **incident,
    )
    second = await make_task(client, admin_headers, title="Disk 91 %", priority="HIGH", **incident)
    response = await client.patch(
        f"/tasks/{second['id']}/assign", json={"assigned_to": dev.id}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    response = await client.post(
        f"/tasks/{first['id']}/comments",
        json={"body": f"@{dev.username} @{support.username} can you look?"},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    response = await client.post(f"/tasks/{second['id']}/escalate", headers=admin_headers)
    assert response.status_code == 200, response.text
    third = await make_task(
        client, admin_headers, title="Renew the certificate", assigned_to=dev.id
    )
    for step in ("acknowledge", "start", "complete"):
        response = await client.patch(f"/tasks/{third['id']}/{step}", headers=admin_headers)
        assert response.status_code == 200, (step, response.text)
    # The second task's thresholds: its response target is missed.
    ctx_clock = ctx.clock
    assert isinstance(ctx_clock, SettableClock)
    ctx_clock.set(T0 + timedelta(minutes=16))
    await engine_registry(ctx.settings).get("sla").run(ctx, batch=500)
    return {"dev": dev, "support": support, "manager": manager, "first": first}


async def test_a_pass_queues_what_events_reading_for_themselves_queue(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_context: AppContext
) -> None:
    world = await _world(client, admin_headers, app_context)
    relay = engine_registry(app_context.settings).get("relay")

    report = await relay.run(app_context, batch=500)
    assert report.counts["failed"] == 0
    prepared = await _rows(app_context)

    # What was queued covers every kind of event that notifies, and each rule.
    kinds = {row[FIELDS.index("notification_type")] for row in prepared.values()}
    assert {"task.created", "task.assigned", "task.completed", "comment.created"} <= kinds
    assert "escalation.fired" in kinds
    assert kinds & {"sla.warning", "sla.breach"}
    first = uuid.UUID(world["first"]["id"])
    created = [
        r
        for r in prepared.values()
        if r[FIELDS.index("notification_type")] == "task.created"
        and r[FIELDS.index("task_id")] == first
    ]
    by_whom = {(r[FIELDS.index("recipient")], r[FIELDS.index("channel")]) for r in created}
    # dev by e-mail (held by quiet hours); support switched e-mail off; the manager is paged
    # by the policy instead.
    assert by_whom == {(world["dev"].username, "EMAIL")}
    (dev_created,) = created
    assert dev_created[FIELDS.index("subject")].startswith("New for ")
    assert dev_created[FIELDS.index("scheduled_at")] > dev_created[FIELDS.index("created_at")]
    assert any(r[FIELDS.index("channel")] == "SLACK" for r in prepared.values())

    # The same events again, each consumer reading for itself (no preparer, no shared
    # reads): the same rows.
    async with app_context.sessions() as session, session.begin():
        await session.execute(delete(Notification).where(Notification.webhook_id.is_(None)))
    await _unpublish(app_context)
    alone = RelayEngine([notifications.consume])
    assert (await alone.run(app_context, batch=500)).counts["failed"] == 0
    assert await _rows(app_context) == prepared

    # Redelivered through the prepared pass: nothing queued twice, nothing fails.
    await _unpublish(app_context)
    report = await relay.run(app_context, batch=500)
    assert report.counts["failed"] == 0
    assert await _rows(app_context) == prepared


async def test_events_that_reach_nobody_read_nothing(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_context: AppContext
) -> None:
    await _world(client, admin_headers, app_context)
    async with app_context.sessions() as session:
        events = list(await session.scalars(select(OutboxEvent).order_by(OutboxEvent.created_at)))
    silent = [e for e in events if e.event_type not in NOTIFYING]
    assert {"task.started", "task.acknowledged"} <= {e.event_type for e in silent}
    now = app_context.clock.now()
    async with app_context.sessions() as session:
        with statements(app_context) as seen:
            for item in silent:
                await notifications.consume(session, item, now)
        assert seen == []
        # Read as a notifying event would be, each of them reaches nobody.
        for item in silent:
            assert await notifications._wanted(session, item) == [], item.event_type
    assert notifications.NOTIFYING == NOTIFYING


async def test_a_pass_reads_people_preferences_keys_and_templates_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_context: AppContext
) -> None:
    relay = engine_registry(app_context.settings).get("relay")
    people = [await make_user(client, admin_headers, "developer") for _ in range(3)]
    await relay.run(app_context, batch=500)  # what the set-up itself wrote
    for n, who in enumerate(people):
        await make_task(client, admin_headers, title=f"for {n}", assigned_to=who.id)
        await make_task(client, admin_headers, title=f"also {n}", assigned_to=who.id)

    with statements(app_context) as seen:
        report = await relay.run(app_context, batch=500)

    assert report.counts["events"] == 6
    assert report.counts["failed"] == 0
    assert selects_from(seen, "users") == 1  # with the tasks' additional assignees
    assert selects_from(seen, "task_assignees") == 0
    assert selects_from(seen, "notification_preferences") == 1
    assert selects_from(seen, "notification_templates") == 1
    assert selects_from(seen, "notifications") == 1  # the batch's dedup keys
    assert len(await _rows(app_context)) == 6


async def test_a_change_between_two_passes_is_seen_by_the_second(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_context: AppContext
) -> None:
    relay = engine_registry(app_context.settings).get("relay")
    dev = await make_user(client, admin_headers, "developer")
    await relay.run(app_context, batch=500)

    async def subject_of_next() -> tuple[str, ...]:
        task = await make_task(client, admin_headers, title="next", assigned_to=dev.id)
        assert (await relay.run(app_context, batch=500)).counts["failed"] == 0
        async with app_context.sessions() as session:
            rows = await session.scalars(
                select(Notification).where(Notification.task_id == uuid.UUID(task["id"]))
            )
            return tuple(sorted(f"{row.channel} {row.subject}" for row in rows))

    async def template(source: str | None) -> None:
        response = await client.put(
            "/notification-templates/task.created.email.subject",
            json={"source": source},
            headers=admin_headers,
        )
        assert response.status_code == 200, response.text

    await template("first: {{ task.title }}")
    assert await subject_of_next() == ("EMAIL first: next",)
    await template("second: {{ task.title }}")
    assert await subject_of_next() == ("EMAIL second: next",)
    response = await client.put(
        "/users/me/notification-preferences",
        json={"preferences": [{"channel": "EMAIL", "enabled": False}]},
        headers=dev.headers,
    )
    assert response.status_code == 200, response.text
    assert await subject_of_next() == ()
    response = await client.put(
        "/users/me/notification-preferences",
        json={"preferences": [{"channel": "EMAIL", "enabled": True}]},
        headers=dev.headers,
    )
    assert response.status_code == 200, response.text
    await template(None)
    (only,) = await subject_of_next()
    assert only.startswith("EMAIL ")
    assert "second" not in only
