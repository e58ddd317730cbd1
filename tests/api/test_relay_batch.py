"""One relay pass reads per batch what does not change per event.

The pass loads the tasks of all its events in one statement and reads the active
escalation policies and webhook subscriptions once (`db.share_reads`), where each event's
consumers used to read them again; it numbers its streamed events under one lock from one
read of the last number (`tests/api/test_realtime_delivery.py`), and an event that fails
after its number leaves no gap. What the consumers plan stays the same: one escalation
run per matching policy and event, one webhook delivery per subscription and event.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from opsflow.composition import engine_registry, relay_consumers, relay_preparers
from opsflow.context import AppContext
from opsflow.events.relay import RelayEngine
from opsflow.models.escalation import EscalationEvent
from opsflow.models.notification import Notification
from opsflow.models.outbox import OutboxEvent
from tests.api.statement_support import selects_from, statements
from tests.factories import make_task

EVENTS = 6
POLICY = {
    "name": "every-new-incident",
    "conditions": {"task_type": ["INCIDENT"]},
    "trigger": "created",
    "steps": [{"delay_minutes": 30, "targets": ["role:admin"], "channels": ["email"]}],
}


async def test_a_relay_pass_reads_tasks_policies_and_subscriptions_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_context: AppContext
) -> None:
    created = await client.post("/escalation-policies", json=POLICY, headers=admin_headers)
    assert created.status_code == 201, created.text
    policy_id = uuid.UUID(created.json()["id"])
    hook = {"name": "bridge", "url": "http://127.0.0.1:9/hook", "event_types": ["task.created"]}
    created = await client.post("/webhooks", json=hook, headers=admin_headers)
    assert created.status_code == 201, created.text
    hook_id = uuid.UUID(created.json()["id"])
    relay = engine_registry(app_context.settings).get("relay")
    await relay.run(app_context, batch=500)  # what the set-up itself wrote
    for n in range(EVENTS):
        await make_task(client, admin_headers, title=f"batch {n}", task_type="INCIDENT")

    with statements(app_context) as seen:
        report = await relay.run(app_context, batch=500)

    assert report.counts["events"] >= EVENTS
    assert report.counts["failed"] == 0
    assert selects_from(seen, "tasks") == 1
    assert selects_from(seen, "escalation_policies") == 1
    assert selects_from(seen, "webhook_subscriptions") == 1
    async with app_context.sessions() as session:
        runs = await session.scalar(
            select(func.count(func.distinct(EscalationEvent.task_id))).where(
                EscalationEvent.policy_id == policy_id
            )
        )
        deliveries = await session.scalar(
            select(func.count()).where(Notification.webhook_id == hook_id)
        )
    assert runs == EVENTS
    assert deliveries == EVENTS


async def test_an_event_that_fails_after_its_number_leaves_no_gap(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_context: AppContext
) -> None:
    relay = engine_registry(app_context.settings).get("relay")
    await relay.run(app_context, batch=500)  # what the set-up itself wrote
    tasks = [
        await make_task(client, admin_headers, title=f"gap {n}", task_type="INCIDENT")
        for n in range(4)
    ]
    doomed = uuid.UUID(tasks[1]["id"])

    async def fail_after_numbering(session: Any, event: OutboxEvent, now: Any) -> None:
        if event.aggregate_id == doomed:  # after the realtime consumer gave it its number
            raise RuntimeError("a consumer after the numbering failed")

    failing = RelayEngine([*relay_consumers(), fail_after_numbering], preparers=relay_preparers())
    report = await failing.run(app_context, batch=500)

    assert report.counts["failed"] >= 1
    async with app_context.sessions() as session:
        numbered = list(
            await session.execute(
                select(OutboxEvent.stream_seq, OutboxEvent.aggregate_id)
                .where(OutboxEvent.stream_seq.is_not(None))
                .order_by(OutboxEvent.stream_seq)
            )
        )
    assert [seq for seq, _ in numbered] == list(range(1, len(numbered) + 1))
    assert doomed not in {aggregate for _, aggregate in numbered}
    assert {uuid.UUID(t["id"]) for t in tasks} - {doomed} <= {a for _, a in numbered}
