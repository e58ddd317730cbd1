"""Escalation with the settable clock: runs planned from SLA events through the outbox relay,
steps fired at their delays, stopped by a response, postponed by snooze, skipped when
empty, repeated; the default escalation; manual escalation; policy CRUD."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from opsflow.clock import SettableClock
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.escalation import service as escalation_service
from opsflow.escalation.firing import DEFAULT_POLICY_NAME
from opsflow.events import relay
from opsflow.events.relay import RelayEngine
from opsflow.models.escalation import EscalationEvent
from opsflow.models.outbox import OutboxEvent
from tests.conftest import T0, assert_error
from tests.factories import at, make_task, make_team, make_user

INCIDENT = {
    "title": "Payments API returns 502",
    "task_type": "INCIDENT",
    "priority": "CRITICAL",
    "start_sla_minutes": 15,
    "resolve_sla_minutes": 120,
}
DONE_WHEN_POLICY = {
    "name": "critical-breach",
    "conditions": {"priority": ["CRITICAL"]},
    "trigger": "breach",
    "steps": [
        {"delay_minutes": 0, "targets": ["assignee"], "channels": ["email"]},
        {"delay_minutes": 5, "targets": ["team_lead"], "channels": ["slack", "email"]},
    ],
    "repeat": 1,
}


async def _world(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    team_id = await make_team(client, admin)
    lead = await make_user(client, admin, "team_lead", team_id=team_id)
    developer = await make_user(client, admin, "developer", team_id=team_id)
    response = await client.patch(f"/teams/{team_id}", json={"lead_id": lead.id}, headers=admin)
    assert response.status_code == 200, response.text
    return {"team_id": team_id, "lead": lead, "developer": developer}


async def _incident(client: httpx.AsyncClient, admin: dict[str, str], **fields: Any) -> str:
    return str((await make_task(client, admin, **{**INCIDENT, **fields}))["id"])


async def _escalations(client: httpx.AsyncClient, admin: dict[str, str], task_id: str) -> Any:
    response = await client.get(f"/tasks/{task_id}/escalations", headers=admin)
    assert response.status_code == 200, response.text
    return response.json()


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_breach_policy_fires_each_step_at_its_instant_and_ack_stops_the_rest(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    world = await _world(client, admin_headers)
    created = await client.post(
        "/escalation-policies", json=DONE_WHEN_POLICY, headers=admin_headers
    )
    assert created.status_code == 201, created.text
    task_id = await _incident(
        client, admin_headers, assigned_to=world["developer"].id, team_id=world["team_id"]
    )

    await at(app_context, clock, 14.9)
    assert (await _escalations(client, admin_headers, task_id))["planned"] == []

    await at(app_context, clock, 15)  # START_BREACH: the run is planned, level 1 fires now
    escalations = await _escalations(client, admin_headers, task_id)
    assert [(e["level"], e["cycle"]) for e in escalations["fired"]] == [(1, 0)]
    fired = escalations["fired"][0]
    assert [r["username"] for r in fired["recipients"]] == [world["developer"].username]
    assert _instant(fired["fire_at"]) == T0 + timedelta(minutes=15)
    planned = [(e["level"], e["cycle"], _instant(e["fire_at"])) for e in escalations["planned"]]
    assert planned == [
        (2, 0, T0 + timedelta(minutes=20)),
        (1, 1, T0 + timedelta(minutes=25)),
        (2, 1, T0 + timedelta(minutes=30)),
    ]

    await at(app_context, clock, 19.9)
    assert len((await _escalations(client, admin_headers, task_id))["fired"]) == 1
    await at(app_context, clock, 20)
    escalations = await _escalations(client, admin_headers, task_id)
    second = escalations["fired"][1]
    assert (second["level"], second["channels"]) == (2, ["slack", "email"])
    assert [r["username"] for r in second["recipients"]] == [world["lead"].username]

    await at(app_context, clock, 22)
    ack = await client.patch(f"/tasks/{task_id}/acknowledge", json={}, headers=admin_headers)
    assert ack.status_code == 200, ack.text
    await at(app_context, clock, 40)
    escalations = await _escalations(client, admin_headers, task_id)
    assert len(escalations["fired"]) == 2
    assert escalations["planned"] == []
    assert [(e["status"], e["reason"]) for e in escalations["other"]] == [
        ("CANCELLED", "acknowledged"),
        ("CANCELLED", "acknowledged"),
    ]

    events = (await client.get(f"/tasks/{task_id}/sla-events", headers=admin_headers)).json()
    escalation_events = [e for e in events["events"] if e["event_type"] == "ESCALATION"]
    assert [e["escalation_level"] for e in escalation_events] == [1, 2]
    assert escalation_events[1]["escalated_to"] == world["lead"].id
    assert events["summary"]["escalations"] == 2
    audit = await client.get(
        "/audit-logs",
        params={"entity_id": task_id, "action": "ESCALATION_FIRED", "page_size": 50},
        headers=admin_headers,
    )
    assert [row["action"] for row in audit.json()["items"]] == ["ESCALATION_FIRED"] * 2
    listed = await client.get(
        "/escalation-events", params={"task_id": task_id, "status": "FIRED"}, headers=admin_headers
    )
    assert listed.json()["pagination"]["total_items"] == 2


async def test_snooze_postpones_pending_steps(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    world = await _world(client, admin_headers)
    await client.post("/escalation-policies", json=DONE_WHEN_POLICY, headers=admin_headers)
    task_id = await _incident(
        client, admin_headers, assigned_to=world["developer"].id, team_id=world["team_id"]
    )
    await at(app_context, clock, 15)
    snoozed = await client.patch(
        f"/tasks/{task_id}/snooze", json={"minutes": 30}, headers=admin_headers
    )
    assert snoozed.status_code == 200, snoozed.text
    planned = (await _escalations(client, admin_headers, task_id))["planned"]
    # The next step was due at +20; it now comes when the snooze ends (+45), the rest keep
    # their spacing.
    assert [_instant(e["fire_at"]) for e in planned] == [
        T0 + timedelta(minutes=45),
        T0 + timedelta(minutes=50),
        T0 + timedelta(minutes=55),
    ]
    await at(app_context, clock, 44)
    assert len((await _escalations(client, admin_headers, task_id))["fired"]) == 1
    await at(app_context, clock, 45)
    assert len((await _escalations(client, admin_headers, task_id))["fired"]) == 2


async def test_skip_if_empty_moves_on_at_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    manager = await make_user(client, admin_headers, "manager")
    policy = {
        "name": "empty-first",
        "trigger": "breach",
        "skip_if_empty": True,
        "steps": [
            {"delay_minutes": 0, "targets": ["team_lead"]},  # the task has no team
            {"delay_minutes": 10, "targets": ["manager"]},
        ],
    }
    assert (
        await client.post("/escalation-policies", json=policy, headers=admin_headers)
    ).status_code == 201
    task_id = await _incident(client, admin_headers)
    await at(app_context, clock, 15)
    escalations = await _escalations(client, admin_headers, task_id)
    assert [(e["level"], e["status"]) for e in escalations["other"]] == [(1, "SKIPPED")]
    assert [(e["level"], _instant(e["fired_at"])) for e in escalations["fired"]] == [
        (2, T0 + timedelta(minutes=15))
    ]
    assert escalations["fired"][0]["recipients"][0]["username"] == manager.username


async def test_without_a_policy_a_start_breach_reaches_the_team_lead_after_5_minutes(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    world = await _world(client, admin_headers)
    with_team = await _incident(client, admin_headers, team_id=world["team_id"])
    no_team = await _incident(client, admin_headers, team_id=None)
    await at(app_context, clock, 15)
    planned = (await _escalations(client, admin_headers, with_team))["planned"]
    assert [_instant(e["fire_at"]) for e in planned] == [T0 + timedelta(minutes=20)]
    assert planned[0]["policy_name"] == DEFAULT_POLICY_NAME
    await at(app_context, clock, 20)
    fired = (await _escalations(client, admin_headers, with_team))["fired"]
    assert [r["username"] for r in fired[0]["recipients"]] == [world["lead"].username]
    fired = (await _escalations(client, admin_headers, no_team))["fired"]
    assert [r["username"] for r in fired[0]["recipients"]] == ["admin"]


async def test_started_task_is_not_escalated_by_default(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    task_id = await _incident(client, admin_headers)
    await at(app_context, clock, 16)
    started = await client.patch(f"/tasks/{task_id}/start", json={}, headers=admin_headers)
    assert started.status_code == 200, started.text
    await at(app_context, clock, 30)
    escalations = await _escalations(client, admin_headers, task_id)
    assert escalations["fired"] == []
    assert [e["reason"] for e in escalations["other"]] == ["started"]


async def test_manual_escalation_fires_the_next_level_now(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    world = await _world(client, admin_headers)
    await client.post("/escalation-policies", json=DONE_WHEN_POLICY, headers=admin_headers)
    task_id = await _incident(
        client, admin_headers, assigned_to=world["developer"].id, team_id=world["team_id"]
    )
    await at(app_context, clock, 15)
    clock.set(T0 + timedelta(minutes=16))
    response = await client.post(
        f"/tasks/{task_id}/escalate",
        json={"reason": "customer on the phone"},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["level"], body["status"]) == (2, "FIRED")
    assert _instant(body["fired_at"]) == T0 + timedelta(minutes=16)
    # Without a run under way, the matching policy's first level fires.
    other = await _incident(client, admin_headers, team_id=world["team_id"])
    response = await client.post(f"/tasks/{other}/escalate", headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.json()["level"] == 1
    completed = await _incident(client, admin_headers)
    await client.patch(f"/tasks/{completed}/start", json={}, headers=admin_headers)
    await client.patch(f"/tasks/{completed}/complete", json={}, headers=admin_headers)
    assert_error(
        await client.post(f"/tasks/{completed}/escalate", headers=admin_headers), 409, "CONFLICT"
    )


async def test_a_redelivered_event_plans_nothing_twice(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    await client.post(
        "/escalation-policies",
        json={**DONE_WHEN_POLICY, "trigger": "created", "conditions": {}},
        headers=admin_headers,
    )
    task_id = await _incident(client, admin_headers)
    async with unit_of_work(app_context.sessions) as session:
        event = await session.scalar(
            select(OutboxEvent).where(
                OutboxEvent.event_type == "task.created",
                OutboxEvent.aggregate_id == uuid.UUID(task_id),
            )
        )
        assert event is not None
        for _ in range(3):  # at least once: the same event again and again
            await escalation_service.consume(session, event, clock.now())
    async with unit_of_work(app_context.sessions) as session:
        count = await session.scalar(
            select(func.count())
            .select_from(EscalationEvent)
            .where(EscalationEvent.task_id == uuid.UUID(task_id))
        )
    assert count == 4  # two steps, repeated once: planned once


async def test_a_failing_consumer_holds_only_its_event(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    first = await _incident(client, admin_headers, title="first")
    await _incident(client, admin_headers, title="second")

    async def picky(session: Any, event: OutboxEvent, now: datetime) -> None:
        if event.aggregate_id == uuid.UUID(first):
            raise RuntimeError("consumer down")

    result = await RelayEngine([picky]).run(app_context, batch=500)
    assert result.counts["failed"] == 1
    assert result.counts["events"] >= 2  # the two tasks' events, and the accounts' set-up events
    async with unit_of_work(app_context.sessions) as session:
        rows = list(await session.scalars(select(OutboxEvent).order_by(OutboxEvent.created_at)))
    held = [r for r in rows if r.published_at is None]
    assert [r.aggregate_id for r in held] == [uuid.UUID(first)]
    assert held[0].attempts == 1
    assert held[0].last_error == "RuntimeError: consumer down"
    assert held[0].available_at == clock.now() + relay.backoff(1)
    again = await RelayEngine([picky]).run(app_context, batch=500)
    assert again.counts["events"] == 0  # not before its backoff
    clock.advance(relay.backoff(1))
    assert (await RelayEngine([]).run(app_context, batch=500)).counts["events"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"steps": []}, "steps"),
        ({"steps": [{"targets": ["nobody"]}]}, "steps"),
        ({"steps": [{"targets": ["user:not-a-uuid"]}]}, "steps"),
        ({"steps": [{"targets": ["assignee"], "channels": ["pigeon"]}]}, "steps"),
        ({"trigger": "whenever"}, "trigger"),
        ({"conditions": {"priority": ["URGENT"]}}, "conditions"),
        ({"conditions": {"colour": ["red"]}}, "conditions"),
        ({"repeat": -1}, "repeat"),
        ({"steps": [{"targets": ["assignee"], "delay_minutes": -5}]}, "steps"),
    ],
)
async def test_invalid_policies_are_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    base = {"name": "p", "steps": [{"targets": ["assignee"]}]}
    response = await client.post(
        "/escalation-policies", json={**base, **body}, headers=admin_headers
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert any(field in str(d.get("field")) for d in error["details"]), error


async def test_policy_crud_is_audited(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = await client.post(
        "/escalation-policies", json=DONE_WHEN_POLICY, headers=admin_headers
    )
    assert created.status_code == 201, created.text
    policy_id = created.json()["id"]
    duplicate = await client.post(
        "/escalation-policies", json=DONE_WHEN_POLICY, headers=admin_headers
    )
    assert_error(duplicate, 409, "CONFLICT")
    patched = await client.patch(
        f"/escalation-policies/{policy_id}", json={"repeat": 2}, headers=admin_headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["repeat"] == 2
    assert (
        await client.delete(f"/escalation-policies/{policy_id}", headers=admin_headers)
    ).status_code == 204
    audit = await client.get(
        "/audit-logs", params={"entity_type": "escalation_policy"}, headers=admin_headers
    )
    assert sorted(row["action"] for row in audit.json()["items"]) == [
        "ESCALATION_POLICY_CREATED",
        "ESCALATION_POLICY_DELETED",
        "ESCALATION_POLICY_UPDATED",
    ]


async def test_an_acknowledged_task_left_unresolved_re_notifies_after_the_ack_timeout(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    world = await _world(client, admin_headers)
    policy = {
        "name": "ack-timeout",
        "trigger": "created",
        "ack_timeout_minutes": 30,
        "steps": [{"delay_minutes": 10, "targets": ["team_lead"], "channels": ["email"]}],
    }
    assert (
        await client.post("/escalation-policies", json=policy, headers=admin_headers)
    ).status_code == 201
    task_id = await _incident(client, admin_headers, team_id=world["team_id"])
    await at(app_context, clock, 5)
    ack = await client.patch(f"/tasks/{task_id}/acknowledge", json={}, headers=admin_headers)
    assert ack.status_code == 200, ack.text
    escalations = await _escalations(client, admin_headers, task_id)
    # The created-run step (due +10) stopped; the ack-timeout step planned for +35.
    assert [(e["trigger"], e["status"]) for e in escalations["other"]] == [("created", "CANCELLED")]
    assert [(e["trigger"], _instant(e["fire_at"])) for e in escalations["planned"]] == [
        ("ack_timeout", T0 + timedelta(minutes=35))
    ]
    await at(app_context, clock, 35)
    fired = (await _escalations(client, admin_headers, task_id))["fired"]
    assert [(e["trigger"], e["recipients"][0]["username"]) for e in fired] == [
        ("ack_timeout", world["lead"].username)
    ]
    # Completing stops what is left; a second acknowledgement never happens (once only).
    other = await _incident(client, admin_headers, team_id=world["team_id"])
    await client.patch(f"/tasks/{other}/acknowledge", json={}, headers=admin_headers)
    await client.patch(f"/tasks/{other}/start", json={}, headers=admin_headers)
    await client.patch(f"/tasks/{other}/complete", json={}, headers=admin_headers)
    assert (await _escalations(client, admin_headers, other))["planned"] == []


async def test_a_team_default_policy_escalates_its_tasks_that_match_no_policy(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    world = await _world(client, admin_headers)
    other_team = await make_team(client, admin_headers)
    policy = await client.post(
        "/escalation-policies",
        json={
            "name": "team-default",
            "conditions": {"priority": ["LOW"]},  # the team's default needs no match
            "trigger": "breach",
            "steps": [{"delay_minutes": 2, "targets": ["team"], "channels": ["email"]}],
        },
        headers=admin_headers,
    )
    assert policy.status_code == 201, policy.text
    policy_id = policy.json()["id"]
    unknown = await client.patch(
        f"/teams/{world['team_id']}",
        json={"escalation_policy_id": str(uuid.uuid4())},
        headers=admin_headers,
    )
    assert_error(unknown, 400, "VALIDATION_ERROR")
    named = await client.patch(
        f"/teams/{world['team_id']}",
        json={"escalation_policy_id": policy_id},
        headers=admin_headers,
    )
    assert named.status_code == 200, named.text
    ours = await _incident(client, admin_headers, team_id=world["team_id"])
    theirs = await _incident(client, admin_headers, team_id=other_team)

    await at(app_context, clock, 15)  # both START breaches
    planned = (await _escalations(client, admin_headers, ours))["planned"]
    assert [(e["policy_name"], _instant(e["fire_at"])) for e in planned] == [
        ("team-default", T0 + timedelta(minutes=17))
    ]
    planned = (await _escalations(client, admin_headers, theirs))["planned"]
    assert [(e["policy_name"], _instant(e["fire_at"])) for e in planned] == [
        (DEFAULT_POLICY_NAME, T0 + timedelta(minutes=20))
    ]
    await at(app_context, clock, 17)
    fired = (await _escalations(client, admin_headers, ours))["fired"]
    assert sorted(r["username"] for r in fired[0]["recipients"]) == sorted(
        [world["lead"].username, world["developer"].username]
    )


LEVELS_CONFIG = """
sla_targets:
  ENTERPRISE:
    P0:
      response_minutes: 60
      resolution_minutes: 480
      escalation: {LEVEL_1: 5, LEVEL_2: 20, LEVEL_3: 30}
escalation_levels:
  0: "No escalation"
  1: "Team lead notified"
  2: "Manager notified"
  3: "Director notified"
opsflow:
  defaults: {calendar: office}
  calendars:
    office:
      timezone: UTC
      hours:
        mon: ["09:00-17:00"]
        tue: ["09:00-17:00"]
        wed: ["09:00-17:00"]
        thu: ["09:00-17:00"]
        fri: ["09:00-17:00"]
"""


async def test_escalation_levels_of_an_imported_sla_config_fire_in_working_minutes(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    world = await _world(client, admin_headers)
    manager = await make_user(client, admin_headers, "manager", team_id=world["team_id"])
    imported = await client.post(
        "/sla-policies/import", content=LEVELS_CONFIG, headers=admin_headers
    )
    assert imported.status_code == 200, imported.text
    clock.set(T0.replace(hour=16, minute=50))  # Tuesday, 10 working minutes left today
    created = await client.post(
        "/tasks",
        json={
            "title": "Enterprise checkout down",
            "task_type": "INCIDENT",
            "priority": "CRITICAL",
            "customer_tier": "ENTERPRISE",
            "team_id": world["team_id"],
        },
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    assert created.json()["sla_policy_name"] == "enterprise-p0"

    minutes = (16 - 10) * 60 + 20  # T0 is 10:30; the task was created at 16:50
    await at(app_context, clock, minutes)
    planned = (await _escalations(client, admin_headers, task_id))["planned"]
    wednesday = T0 + timedelta(days=1)
    assert [(e["level"], _instant(e["fire_at"])) for e in planned] == [
        (1, T0.replace(hour=16, minute=55)),
        (2, wednesday.replace(hour=9, minute=10)),  # 10 minutes on Tuesday, 10 on Wednesday
        (3, wednesday.replace(hour=9, minute=20)),
    ]
    assert {e["policy_name"] for e in planned} == {"sla policy: enterprise-p0"}
    assert planned[1]["message"] == "Level 2 of SLA policy enterprise-p0: Manager notified."

    await at(app_context, clock, minutes + 5)
    fired = (await _escalations(client, admin_headers, task_id))["fired"]
    assert [(e["level"], [r["username"] for r in e["recipients"]]) for e in fired] == [
        (1, [world["lead"].username])
    ]
    overnight = minutes + 16 * 60 + 19  # Wednesday 09:09
    await at(app_context, clock, overnight)
    assert len((await _escalations(client, admin_headers, task_id))["fired"]) == 1
    await at(app_context, clock, overnight + 1)
    fired = (await _escalations(client, admin_headers, task_id))["fired"]
    assert [(e["level"], [r["username"] for r in e["recipients"]]) for e in fired] == [
        (1, [world["lead"].username]),
        (2, [manager.username]),
    ]

    ack = await client.patch(f"/tasks/{task_id}/acknowledge", json={}, headers=admin_headers)
    assert ack.status_code == 200, ack.text
    await at(app_context, clock, overnight + 30)
    escalations = await _escalations(client, admin_headers, task_id)
    assert len(escalations["fired"]) == 2
    assert escalations["planned"] == []
    assert [(e["level"], e["status"], e["reason"]) for e in escalations["other"]] == [
        (3, "CANCELLED", "acknowledged")
    ]
    notified = await client.get(
        "/notifications",
        params={"task_id": task_id, "notification_type": "escalation.fired"},
        headers=admin_headers,
    )
    assert sorted(n["recipient"] for n in notified.json()["items"]) == sorted(
        [world["lead"].username, manager.username]
    )
