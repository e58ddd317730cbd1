"""Notifications end to end with the settable clock and real destinations on loopback: an
escalation policy's steps become e-mails in a real SMTP server and Slack posts in an HTTP
sink; failures retry with backoff and end DEAD; the API retries a dead letter."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from opsflow.clock import SettableClock
from opsflow.config import Settings
from opsflow.context import AppContext
from tests.conftest import T0, assert_error, delivery_settings
from tests.factories import at, make_team, make_user
from tests.sinks import HttpSink, Reply, SmtpSink

POLICY = {
    "name": "critical-breach",
    "conditions": {"priority": ["CRITICAL"]},
    "trigger": "breach",
    "steps": [
        {"delay_minutes": 0, "targets": ["assignee"], "channels": ["email"]},
        {"delay_minutes": 5, "targets": ["team_lead"], "channels": ["slack", "email"]},
    ],
    "repeat": 1,
}
INCIDENT: dict[str, Any] = {
    "title": "Checkout latency over 5 s",
    "task_type": "INCIDENT",
    "priority": "CRITICAL",
    "start_sla_minutes": 15,
    "resolve_sla_minutes": 120,
}


@pytest.fixture
def settings(database_url: str, smtp: tuple[SmtpSink, int], slack: HttpSink) -> Settings:
    return delivery_settings(database_url, smtp, slack)


async def _world(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    team_id = await make_team(client, admin)
    lead = await make_user(client, admin, "team_lead", team_id=team_id)
    developer = await make_user(client, admin, "developer", team_id=team_id)
    response = await client.patch(f"/teams/{team_id}", json={"lead_id": lead.id}, headers=admin)
    assert response.status_code == 200, response.text
    created = await client.post("/escalation-policies", json=POLICY, headers=admin)
    assert created.status_code == 201, created.text
    task = await client.post(
        "/tasks",
        json={**INCIDENT, "assigned_to": developer.id, "team_id": team_id},
        headers=admin,
    )
    assert task.status_code == 201, task.text
    return {"lead": lead, "developer": developer, "task_id": task.json()["id"]}


async def _notifications(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[Any]:
    response = await client.get("/notifications", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_escalation_steps_reach_people_by_email_and_slack_until_acknowledged(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
    smtp: tuple[SmtpSink, int],
    slack: HttpSink,
) -> None:
    sink = smtp[0]
    world = await _world(client, admin_headers)
    developer, lead, task_id = world["developer"], world["lead"], world["task_id"]

    await at(app_context, clock, 15)  # START_BREACH: level 1, e-mail to the assignee
    rcpts = [r.rcpt_tos for r in sink.received]
    assert [f"{developer.username}@example.com"] in rcpts
    escalation_mail = [
        r for r in sink.received if r.message["X-OpsFlow-Idempotency-Key"] is not None
    ]
    assert escalation_mail, [r.message["Subject"] for r in sink.received]
    assert slack.requests == []

    await at(app_context, clock, 20)  # level 2: Slack + e-mail to the team lead
    assert len(slack.requests) == 1
    post = slack.requests[0]
    assert post.path == "/services/T000/B000/XXXX"
    assert post.headers["idempotency-key"].startswith("opsflow-")
    assert INCIDENT["title"] in post.body.decode()
    assert [f"{lead.username}@example.com"] in [r.rcpt_tos for r in sink.received]

    await at(app_context, clock, 22)
    ack = await client.patch(f"/tasks/{task_id}/acknowledge", json={}, headers=admin_headers)
    assert ack.status_code == 200, ack.text
    mails_before, posts_before = len(sink.received), len(slack.requests)
    await at(app_context, clock, 40)
    assert (len(sink.received), len(slack.requests)) == (mails_before, posts_before)

    escalations = await _notifications(
        client, admin_headers, task_id=task_id, notification_type="escalation.fired"
    )
    sent = sorted((n["recipient"], n["channel"], n["status"]) for n in escalations)
    assert sent == sorted(
        [
            (developer.username, "EMAIL", "SENT"),
            (lead.username, "EMAIL", "SENT"),
            (lead.username, "SLACK", "SENT"),
        ]
    )
    # The developer sees only their own notifications.
    own = await _notifications(client, developer.headers, task_id=task_id)
    assert {n["recipient"] for n in own} == {developer.username}


async def test_a_failing_destination_ends_dead_and_the_api_retries_it(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
    slack: HttpSink,
) -> None:
    world = await _world(client, admin_headers)
    slack.script = [Reply(500, b"boom")] * 3
    await at(app_context, clock, 20)  # the Slack post fails once
    (row,) = await _notifications(client, admin_headers, channel="SLACK")
    assert (row["status"], row["attempts"]) == ("RETRY", 1)
    ack = await client.patch(
        f"/tasks/{world['task_id']}/acknowledge", json={}, headers=admin_headers
    )
    assert ack.status_code == 200, ack.text  # no further steps: one Slack notification
    for minutes in (40, 80, 110):  # past every backoff (base 30 s, capped at 1 h)
        await at(app_context, clock, minutes)
    row = (await client.get(f"/notifications/{row['id']}", headers=admin_headers)).json()
    assert (row["status"], row["attempts"]) == ("DEAD", 3)
    assert "500" in row["error_message"]
    assert [entry["status_code"] for entry in row["attempt_log"]] == [500, 500, 500]
    assert len(slack.requests) == 3

    lead = world["lead"]
    assert_error(
        await client.post(f"/notifications/{row['id']}/retry", headers=lead.headers),
        403,
        "FORBIDDEN",
    )
    retried = await client.post(f"/notifications/{row['id']}/retry", headers=admin_headers)
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["attempts"]) == ("PENDING", 0)
    await at(app_context, clock, 111)
    row = (await client.get(f"/notifications/{row['id']}", headers=admin_headers)).json()
    assert (row["status"], row["attempts"]) == ("SENT", 1)
    assert len(slack.requests) == 4
    keys = {r.headers["idempotency-key"] for r in slack.requests}
    assert len(keys) == 1  # every attempt of one notification carries the same key
    again = await client.post(f"/notifications/{row['id']}/retry", headers=admin_headers)
    assert_error(again, 409, "CONFLICT")


async def test_a_disabled_channel_preference_is_honoured(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
    smtp: tuple[SmtpSink, int],
) -> None:
    world = await _world(client, admin_headers)
    developer = world["developer"]
    response = await client.put(
        "/users/me/notification-preferences",
        json={"preferences": [{"channel": "EMAIL", "enabled": False}]},
        headers=developer.headers,
    )
    assert response.status_code == 200, response.text
    await at(app_context, clock, 15)
    assert await _notifications(client, developer.headers) == []
    assert all(r.rcpt_tos != [f"{developer.username}@example.com"] for r in smtp[0].received)


async def test_notification_reads_by_role(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    lead = await make_user(client, admin_headers, "team_lead")
    auditor = await make_user(client, admin_headers, "auditor")
    manager = await make_user(client, admin_headers, "manager")
    for who in (lead, auditor):
        assert_error(await client.get("/notifications", headers=who.headers), 403, "FORBIDDEN")
    assert (await client.get("/notifications", headers=manager.headers)).status_code == 200
    missing = "00000000-0000-4000-8000-000000000000"
    assert_error(
        await client.get(f"/notifications/{missing}", headers=admin_headers), 404, "NOT_FOUND"
    )
    assert_error(
        await client.post(f"/notifications/{missing}/retry", headers=admin_headers),
        404,
        "NOT_FOUND",
    )
    assert_error(
        await client.get("/notifications", params={"status": "LOST"}, headers=admin_headers),
        400,
        "VALIDATION_ERROR",
    )


async def _window(
    client: httpx.AsyncClient, headers: dict[str, str], start: float, end: float, **extra: Any
) -> Any:
    body = {
        "name": "db failover",
        "starts_at": (T0 + timedelta(minutes=start)).isoformat(),
        "ends_at": (T0 + timedelta(minutes=end)).isoformat(),
        **extra,
    }
    response = await client.post("/maintenance-windows", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_maintenance_window_holds_notifications_then_releases_them(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
    smtp: tuple[SmtpSink, int],
) -> None:
    await _window(client, admin_headers, 10, 30, conditions={"priority": ["CRITICAL"]})
    world = await _world(client, admin_headers)
    developer = world["developer"]
    mailbox = f"{developer.username}@example.com"

    def mails() -> int:
        return sum(1 for r in smtp[0].received if r.rcpt_tos == [mailbox])

    await at(app_context, clock, 1)
    assert mails() == 1  # task.created: before the window, sent
    await at(app_context, clock, 15)  # START_BREACH escalation, inside the window: held
    assert mails() == 1
    held = await _notifications(
        client, admin_headers, notification_type="escalation.fired", channel="EMAIL"
    )
    assert {(n["status"], n["attempts"]) for n in held} == {("PENDING", 0)}
    assert held[0]["attempt_log"][-1]["error"] == "held by maintenance window 'db failover'"
    await at(app_context, clock, 30)  # the window closes: released
    assert mails() >= 2
    released = await _notifications(client, admin_headers, notification_type="escalation.fired")
    assert all(n["status"] == "SENT" for n in released)


async def test_a_drop_window_drops_what_it_held(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    await _window(client, admin_headers, 10, 30, on_end="drop")
    await _world(client, admin_headers)
    await at(app_context, clock, 15)
    await at(app_context, clock, 31)
    rows = await _notifications(client, admin_headers, notification_type="escalation.fired")
    held = [n for n in rows if any(entry.get("held") for entry in n["attempt_log"])]
    assert held  # level 1, fired at +15 inside the window
    assert {(n["status"], n["error_message"]) for n in held} == {
        ("FAILED", "dropped: maintenance window 'db failover' ended")
    }
    # Steps that fired after it closed (+20, +25, +30, all seen at +31) went out.
    assert {n["status"] for n in rows if n not in held} == {"SENT"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ends_at": "2026-01-27T10:00:00Z"}, "ends_at"),  # before starts_at
        ({"ends_at": "2026-04-27T10:00:00Z"}, "ends_at"),  # longer than 31 days
        ({"starts_at": "2026-01-27T10:00:00"}, "starts_at"),  # naive
        ({"on_end": "forget"}, "on_end"),
        ({"conditions": {"priority": ["URGENT"]}}, "conditions"),
    ],
)
async def test_invalid_windows_are_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    base = {
        "name": "w",
        "starts_at": "2026-01-27T11:00:00Z",
        "ends_at": "2026-01-27T12:00:00Z",
    }
    response = await client.post(
        "/maintenance-windows", json={**base, **body}, headers=admin_headers
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert any(field in str(d.get("field")) for d in error["details"]), error


async def test_window_crud_is_audited(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    window = await _window(client, admin_headers, 10, 30)
    patched = await client.patch(
        f"/maintenance-windows/{window['id']}", json={"on_end": "drop"}, headers=admin_headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["on_end"] == "drop"
    listed = await client.get("/maintenance-windows", headers=admin_headers)
    assert [w["id"] for w in listed.json()["items"]] == [window["id"]]
    deleted = await client.delete(f"/maintenance-windows/{window['id']}", headers=admin_headers)
    assert deleted.status_code == 204
    audit = await client.get(
        "/audit-logs", params={"entity_type": "maintenance_window"}, headers=admin_headers
    )
    assert sorted(r["action"] for r in audit.json()["items"]) == [
        "MAINTENANCE_WINDOW_CREATED",
        "MAINTENANCE_WINDOW_DELETED",
        "MAINTENANCE_WINDOW_UPDATED",
    ]


async def test_a_destination_failing_twice_then_answering_gets_it_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
    slack: HttpSink,
) -> None:
    world = await _world(client, admin_headers)
    slack.script = [Reply(502, b"bad gateway"), Reply(503, b"busy")]
    await at(app_context, clock, 20)
    await client.patch(f"/tasks/{world['task_id']}/acknowledge", json={}, headers=admin_headers)
    for minutes in (40, 80):
        await at(app_context, clock, minutes)
    (row,) = await _notifications(client, admin_headers, channel="SLACK")
    assert (row["status"], row["attempts"]) == ("SENT", 3)
    assert [e["status_code"] for e in row["attempt_log"]] == [502, 503, 200]
    assert row["error_message"] is None
    assert len(slack.requests) == 3


async def test_quiet_hours_hold_a_notification_until_they_end(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
    smtp: tuple[SmtpSink, int],
) -> None:
    # T0 is 10:30 UTC; the developer's e-mail is quiet from 10:00 to 11:00 UTC.
    developer_team = await make_team(client, admin_headers)
    developer = await make_user(client, admin_headers, "developer", team_id=developer_team)
    response = await client.put(
        "/users/me/notification-preferences",
        json={
            "preferences": [
                {
                    "channel": "EMAIL",
                    "enabled": True,
                    "quiet_hours_start": "10:00",
                    "quiet_hours_end": "11:00",
                    "timezone": "UTC",
                }
            ]
        },
        headers=developer.headers,
    )
    assert response.status_code == 200, response.text
    task = await client.post(
        "/tasks", json={**INCIDENT, "assigned_to": developer.id}, headers=admin_headers
    )
    assert task.status_code == 201, task.text
    mailbox = f"{developer.username}@example.com"

    def mails() -> int:
        return sum(1 for r in smtp[0].received if r.rcpt_tos == [mailbox])

    await at(app_context, clock, 1)
    (row,) = await _notifications(client, developer.headers, notification_type="task.created")
    assert (row["status"], row["scheduled_at"]) == ("PENDING", "2026-01-27T11:00:00Z")
    assert mails() == 0
    await at(app_context, clock, 29)  # the SLA warning, critical, breach e-mails wait too
    assert mails() == 0
    await at(app_context, clock, 30)  # 11:00 UTC
    rows = await _notifications(client, developer.headers)
    assert {n["notification_type"] for n in rows} >= {"task.created", "sla.breach"}
    assert {(n["status"], n["sent_at"]) for n in rows} == {("SENT", "2026-01-27T11:00:00Z")}
    assert mails() == len(rows)


async def test_a_breach_an_escalation_policy_handles_pages_each_person_once_per_channel(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
    smtp: tuple[SmtpSink, int],
) -> None:
    sink = smtp[0]
    world = await _world(client, admin_headers)  # breach -> at once, e-mail the assignee
    developer = world["developer"]
    address = f"{developer.username}@example.com"
    other = await client.post(
        "/tasks",
        json={**INCIDENT, "title": "Unmatched", "priority": "HIGH", "assigned_to": developer.id},
        headers=admin_headers,
    )
    assert other.status_code == 201, other.text

    await at(app_context, clock, 14.9)
    seen = len(sink.received)
    await at(app_context, clock, 15)  # both START breaches
    subjects = sorted(
        str(r.message["Subject"]) for r in sink.received[seen:] if address in r.rcpt_tos
    )
    assert subjects == [
        f"Escalation (level 1): {INCIDENT['title']}",  # the policy's page, and only it
        "SLA Breach: Unmatched",  # no policy handles this one: the built-in message
    ]
    rows = await _notifications(client, admin_headers, task_id=world["task_id"])
    assert (
        sorted(r["notification_type"] for r in rows if r["recipient"] == developer.username).count(
            "sla.breach"
        )
        == 0
    )
