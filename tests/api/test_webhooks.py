"""Outbound webhooks and editable templates: signed deliveries to a real HTTP sink,
event filters, template overrides used by the next notification."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from opsflow.clock import SettableClock
from opsflow.composition import engine_registry, relay_consumers
from opsflow.context import AppContext
from opsflow.events.relay import RelayEngine
from opsflow.notifications.channels import verify
from opsflow.workers.rounds import run_round
from tests.conftest import T0, assert_error
from tests.factories import make_task, make_user
from tests.sinks import HttpSink, Reply


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    server = HttpSink()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def drain(ctx: AppContext) -> None:
    for _ in range(3):
        await run_round(ctx, engine_registry(ctx.settings))


async def _incident(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    body = {
        "title": "Queue backlog",
        "task_type": "INCIDENT",
        "priority": "HIGH",
        "start_sla_minutes": 10,
        "resolve_sla_minutes": 60,
    }
    return str((await make_task(client, headers, **body))["id"])


async def test_subscribed_events_are_posted_signed(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
    sink: HttpSink,
) -> None:
    created = await client.post(
        "/webhooks",
        json={"name": "pager-bridge", "url": f"{sink.url}/hook", "event_types": ["task.*"]},
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    shown = await client.get(f"/webhooks/{created.json()['id']}", headers=admin_headers)
    assert "secret" not in shown.json()

    task_id = await _incident(client, admin_headers)
    await drain(app_context)
    assert len(sink.requests) == 1
    request = sink.requests[0]
    assert request.path == "/hook"
    assert request.headers["x-opsflow-event"] == "task.created"
    timestamp = request.headers["x-opsflow-timestamp"]
    assert verify(
        secret, timestamp, request.body, request.headers["x-opsflow-signature"], clock.now()
    )
    assert not verify("wrong-secret-000000", timestamp, request.body,
                      request.headers["x-opsflow-signature"], clock.now())  # fmt: skip
    body = request.json()
    assert body["type"] == "task.created"
    assert task_id in request.body.decode()
    assert request.headers["idempotency-key"].startswith("opsflow-")

    # SLA events are not in its filter: the START breach posts nothing.
    clock.set(T0 + timedelta(minutes=10))
    await drain(app_context)
    assert [r.headers["x-opsflow-event"] for r in sink.requests] == ["task.created"]
    notifications = await client.get(
        "/notifications", params={"channel": "WEBHOOK"}, headers=admin_headers
    )
    assert [n["status"] for n in notifications.json()["items"]] == ["SENT"]


async def test_inactive_or_deleted_subscriptions_get_nothing(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
    sink: HttpSink,
) -> None:
    created = await client.post(
        "/webhooks",
        json={"name": "quiet", "url": f"{sink.url}/q", "is_active": False},
        headers=admin_headers,
    )
    webhook_id = created.json()["id"]
    await _incident(client, admin_headers)
    await drain(app_context)
    assert sink.requests == []
    patched = await client.patch(
        f"/webhooks/{webhook_id}", json={"is_active": True}, headers=admin_headers
    )
    assert patched.status_code == 200, patched.text
    await _incident(client, admin_headers)
    # queued for the subscription...
    await RelayEngine(relay_consumers()).run(app_context, batch=500)
    assert (
        await client.delete(f"/webhooks/{webhook_id}", headers=admin_headers)
    ).status_code == 204
    await drain(app_context)
    assert sink.requests == []  # queued, then its subscription was deleted
    failed = await client.get(
        "/notifications", params={"channel": "WEBHOOK"}, headers=admin_headers
    )
    assert [(n["status"], n["error_message"]) for n in failed.json()["items"]] == [
        ("FAILED", "the webhook subscription was deleted or deactivated")
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"event_types": ["everything"]}, "event_types"),
        ({"secret": "short"}, "secret"),
        ({"name": ""}, "name"),
    ],
)
async def test_invalid_subscriptions_are_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    base = {"name": "x", "url": "https://example.com/hook"}
    response = await client.post("/webhooks", json={**base, **body}, headers=admin_headers)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert any(field in str(d.get("field")) for d in error["details"]), error


async def test_only_admins_manage_webhooks_and_templates(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    manager = await make_user(client, admin_headers, "manager")
    for path in ("/webhooks", "/notification-templates"):
        assert_error(await client.get(path, headers=manager.headers), 403, "FORBIDDEN")


async def test_an_edited_template_is_used_by_the_next_notification(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    name = "sla.breach.email.subject"
    listed = (await client.get("/notification-templates", headers=admin_headers)).json()
    assert name in [t["name"] for t in listed]
    saved = await client.put(
        f"/notification-templates/{name}",
        json={"source": "BREACH {{ task.title }} [{{ task.priority }}]"},
        headers=admin_headers,
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["overridden"] is True
    developer = await make_user(client, admin_headers, "developer")
    task = await client.post(
        "/tasks",
        json={
            "title": "Disk full on db-2",
            "task_type": "INCIDENT",
            "priority": "HIGH",
            "assigned_to": developer.id,
            "start_sla_minutes": 10,
            "resolve_sla_minutes": 60,
        },
        headers=admin_headers,
    )
    assert task.status_code == 201, task.text
    clock.set(T0 + timedelta(minutes=10))
    await drain(app_context)
    rows = await client.get(
        "/notifications", params={"notification_type": "sla.breach"}, headers=admin_headers
    )
    subjects = [n["subject"] for n in rows.json()["items"]]
    assert subjects == ["BREACH Disk full on db-2 [HIGH]"]
    audit = await client.get(
        "/audit-logs", params={"entity_type": "notification_template"}, headers=admin_headers
    )
    assert [r["action"] for r in audit.json()["items"]] == ["NOTIFICATION_TEMPLATE_UPDATED"]

    reset = await client.put(
        f"/notification-templates/{name}", json={"source": None}, headers=admin_headers
    )
    assert reset.json()["overridden"] is False
    assert reset.json()["source"] == reset.json()["default_source"]


@pytest.mark.parametrize(
    "source",
    [
        "{{ task.title ",  # syntax
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",  # sandbox
        "{{ no_such_variable }}",  # strict
        "x\x00y",
    ],
)
async def test_bad_templates_are_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str], source: str
) -> None:
    response = await client.put(
        "/notification-templates/sla.breach.email.subject",
        json={"source": source},
        headers=admin_headers,
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    current = await client.get(
        "/notification-templates/sla.breach.email.subject", headers=admin_headers
    )
    assert current.json()["overridden"] is False


async def test_unknown_template_names(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    assert_error(
        await client.get("/notification-templates/nothing.here", headers=admin_headers),
        404,
        "NOT_FOUND",
    )
    assert_error(
        await client.get("/notification-templates/BAD NAME", headers=admin_headers),
        400,
        "VALIDATION_ERROR",
    )


async def test_a_destination_that_stays_down_opens_its_circuit_without_burning_attempts(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
    sink: HttpSink,
) -> None:
    created = await client.post(
        "/webhooks",
        json={"name": "flaky", "url": f"{sink.url}/down", "event_types": ["task.created"]},
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    sink.script = [Reply(503, b"maintenance")] * 5  # the breaker opens after 5 failures
    for _ in range(7):
        await _incident(client, admin_headers)
    await drain(app_context)
    assert len(sink.requests) == 5  # two deliveries held, not attempted
    rows = (
        await client.get(
            "/notifications", params={"channel": "WEBHOOK", "page_size": 50}, headers=admin_headers
        )
    ).json()["items"]
    attempts = sorted(row["attempts"] for row in rows)
    assert attempts == [0, 0, 1, 1, 1, 1, 1]
    held = [row for row in rows if row["attempts"] == 0]
    assert all(row["attempt_log"][-1]["held"] for row in held)
    metrics = (await client.get("/metrics")).text
    assert 'opsflow_notification_circuit_open{destination="webhook:' in metrics
    assert "} 1.0" in metrics.split("opsflow_notification_circuit_open{")[1]
    assert 'opsflow_notification_deliveries_total{channel="WEBHOOK",outcome="held"} 2.0' in metrics

    # The destination comes back: after the cooldown a probe goes through, the circuit
    # closes, everything is delivered, the held ones on their first attempt.
    for minutes in (2, 5, 10, 20, 40):
        clock.set(T0 + timedelta(minutes=minutes))
        await drain(app_context)
    rows = (
        await client.get(
            "/notifications", params={"channel": "WEBHOOK", "page_size": 50}, headers=admin_headers
        )
    ).json()["items"]
    assert [row["status"] for row in rows] == ["SENT"] * 7
    assert sorted(row["attempts"] for row in rows) == [1, 1, 2, 2, 2, 2, 2]
    delivered = {r.headers["idempotency-key"] for r in sink.requests if r.path == "/down"}
    assert len(delivered) == 7
    metrics = (await client.get("/metrics")).text
    assert 'opsflow_notifications{channel="webhook",status="sent"} 7.0' in metrics


@pytest.mark.parametrize(
    ("method", "path", "body", "params"),
    [
        ("POST", "/webhooks", {"name": "n", "url": "https://example.com/\x00"}, None),
        (
            "POST",
            "/escalation-policies",
            {"name": "p", "conditions": {"service": ["db\x00"]}, "steps": [{"targets": ["team"]}]},
            None,
        ),
        (
            "POST",
            "/maintenance-windows",
            {
                "name": "w",
                "starts_at": "2026-01-27T11:00:00Z",
                "ends_at": "2026-01-27T12:00:00Z",
                "conditions": {"team": ["\x00"]},
            },
            None,
        ),
        ("GET", "/notifications", None, {"notification_type": "sla.\x00breach"}),
        ("GET", "/notifications", None, {"notification_type": "x" * 500}),
    ],
)
async def test_nul_bytes_and_huge_values_are_400_not_500(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    method: str,
    path: str,
    body: Any,
    params: Any,
) -> None:
    response = await client.request(method, path, json=body, params=params, headers=admin_headers)
    assert_error(response, 400, "VALIDATION_ERROR")
