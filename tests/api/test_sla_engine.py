"""The SLA engine with the settable clock: thresholds fire in order, once, on time."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from opsflow.app import create_app
from opsflow.clock import SettableClock
from opsflow.composition import build_context
from opsflow.context import AppContext
from opsflow.models.audit import AuditLog
from opsflow.models.outbox import OutboxEvent
from opsflow.models.sla import SlaEvent
from opsflow.sla.engine import SlaEngine
from tests.conftest import T0, make_settings
from tests.factories import ALL_PASSES, make_task, make_user

INCIDENT = {
    "title": "Database connection pool exhaustion",
    "task_type": "INCIDENT",
    "priority": "CRITICAL",
    "start_sla_minutes": 15,
    "resolve_sla_minutes": 120,
}


async def _create(client: httpx.AsyncClient, headers: dict[str, str], **extra: Any) -> str:
    return str((await make_task(client, headers, **{**INCIDENT, **extra}))["id"])


async def _events(client: httpx.AsyncClient, headers: dict[str, str], task_id: str) -> list[Any]:
    response = await client.get(f"/tasks/{task_id}/sla-events", headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["events"])


async def _at(clock: SettableClock, ctx: AppContext, minutes: float) -> int:
    clock.set(T0 + timedelta(minutes=minutes))
    return (await SlaEngine().run(ctx, batch=500)).counts["events"]


async def test_untouched_critical_incident_fires_each_threshold_once_in_order(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    task_id = await _create(client, admin_headers)
    expected = [
        (11.25, "START_WARNING"),
        (14.25, "START_CRITICAL"),
        (15, "START_BREACH"),
        (90, "RESOLVE_WARNING"),
        (114, "RESOLVE_CRITICAL"),
        (120, "RESOLVE_BREACH"),
    ]
    seen: list[str] = []
    for minute, event_type in expected:
        assert await _at(clock, app_context, minute - 1 / 60) == 0, f"early {event_type}"
        assert await _at(clock, app_context, minute) == 1, event_type
        assert await _at(clock, app_context, minute) == 0, f"twice {event_type}"
        seen.append(event_type)
        events = await _events(client, admin_headers, task_id)
        assert [e["event_type"] for e in events] == seen
        latest = events[-1]
        assert latest["due_at"] == (T0 + timedelta(minutes=minute)).isoformat().replace(
            "+00:00", "Z"
        )
        assert latest["delay_minutes"] == 0
        assert latest["notify"] is True
    summary = (await client.get(f"/tasks/{task_id}/sla-events", headers=admin_headers)).json()
    assert summary["summary"] == {
        "total_events": 6,
        "warnings": 2,
        "critical": 2,
        "breaches": 2,
        "escalations": 0,
    }
    listed = await client.get(
        "/sla-events", params={"event_type": "START_BREACH"}, headers=admin_headers
    )
    assert [e["task_id"] for e in listed.json()["items"]] == [task_id]
    audit = await client.get("/audit-logs", params={"entity_id": task_id}, headers=admin_headers)
    actions = {row["action"] for row in audit.json()["items"]}
    assert {f"SLA_{event}" for _, event in expected} <= actions
    engine_rows = [r for r in audit.json()["items"] if r["action"].startswith("SLA_")]
    assert {r["actor_type"] for r in engine_rows} == {"system"}
    detail = (await client.get(f"/tasks/{task_id}", headers=admin_headers)).json()
    assert [e["event_type"] for e in detail["sla_events"]] == seen
    assert detail["sla_status"]["state"] == "breached"


async def test_response_and_completion_stop_the_clocks(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    task_id = await _create(client, admin_headers, assigned_to=dev.id)
    clock.set(T0 + timedelta(minutes=10))
    assert (await client.patch(f"/tasks/{task_id}/start", headers=dev.headers)).status_code == 200
    assert await _at(clock, app_context, 100) == 1  # RESOLVE_WARNING only; START is met
    clock.set(T0 + timedelta(minutes=101))
    done = await client.patch(f"/tasks/{task_id}/complete", json={}, headers=dev.headers)
    assert done.status_code == 200
    assert await _at(clock, app_context, 600) == 0
    assert [e["event_type"] for e in await _events(client, admin_headers, task_id)] == [
        "RESOLVE_WARNING"
    ]


async def test_catch_up_records_every_threshold_but_notifies_once_per_clock(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    task_id = await _create(client, admin_headers)
    assert await _at(clock, app_context, 180) == 6
    events = {e["event_type"]: e for e in await _events(client, admin_headers, task_id)}
    assert {k for k, e in events.items() if e["notify"]} == {"START_BREACH", "RESOLVE_BREACH"}
    assert events["START_WARNING"]["delay_minutes"] == 168  # due at 11:15 after creation
    assert events["RESOLVE_BREACH"]["delay_minutes"] == 60
    async with app_context.sessions() as session:
        published = await session.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.event_type.in_(["sla.warning", "sla.critical", "sla.breach"]))
        )
    assert published == 6


async def test_reopen_continues_the_resolve_clock(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    task_id = await _create(client, admin_headers)
    clock.set(T0 + timedelta(minutes=5))
    await client.patch(f"/tasks/{task_id}/start", headers=admin_headers)
    clock.set(T0 + timedelta(minutes=30))
    await client.patch(f"/tasks/{task_id}/complete", json={}, headers=admin_headers)
    clock.set(T0 + timedelta(minutes=90))
    reopened = await client.patch(f"/tasks/{task_id}/reopen", headers=admin_headers)
    assert reopened.status_code == 200
    # 30 minutes used before completion; the 60 completed minutes do not count.
    assert reopened.json()["sla_status"]["resolve_deadline"] == "2026-01-27T13:30:00Z"
    assert await _at(clock, app_context, 149) == 0
    assert await _at(clock, app_context, 150) == 1  # RESOLVE_WARNING at 90 working minutes
    events = await _events(client, admin_headers, task_id)
    assert [e["event_type"] for e in events] == ["RESOLVE_WARNING"]


async def test_new_target_reschedules(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    task_id = await _create(client, admin_headers)
    await client.patch(f"/tasks/{task_id}/acknowledge", headers=admin_headers)
    changed = await client.patch(
        f"/tasks/{task_id}", json={"resolve_sla_minutes": 60}, headers=admin_headers
    )
    assert changed.status_code == 200
    assert changed.json()["sla_status"]["resolve_deadline"] == "2026-01-27T11:30:00Z"
    assert await _at(clock, app_context, 44) == 0
    assert await _at(clock, app_context, 45) == 1  # 75 % of 60 minutes


async def test_cancel_stops_everything(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    task_id = await _create(client, admin_headers)
    assert await _at(clock, app_context, 12) == 1
    clock.set(T0 + timedelta(minutes=13))
    assert (await client.delete(f"/tasks/{task_id}", headers=admin_headers)).status_code == 204
    assert await _at(clock, app_context, 1000) == 0


async def test_parallel_engines_fire_each_event_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    for index in range(30):
        await _create(client, admin_headers, title=f"incident {index}")
    clock.set(T0 + timedelta(hours=3))
    results = await asyncio.gather(*(SlaEngine().run(app_context, batch=7) for _ in range(4)))
    while (await SlaEngine().run(app_context, batch=7)).counts["clocks"]:
        pass
    async with app_context.sessions() as session:
        total = await session.scalar(select(func.count()).select_from(SlaEvent))
        distinct = await session.scalar(
            select(func.count()).select_from(
                select(SlaEvent.clock_id, SlaEvent.event_type).distinct().subquery()
            )
        )
    assert total == distinct == 30 * 6
    assert sum(r.counts["events"] for r in results) <= total


async def test_engine_passes_beside_api_writes_leave_one_audit_row_and_event_each(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    """Engine passes (each event's audit row and outbox event written in bulk) racing API
    writes on the audit chain: every event has exactly one of each, and the chain verifies."""
    for index in range(12):
        await _create(client, admin_headers, title=f"incident {index}")
    clock.set(T0 + timedelta(hours=3))

    async def writes() -> None:
        for index in range(6):
            await _create(client, admin_headers, title=f"while firing {index}")

    await asyncio.gather(writes(), *(SlaEngine().run(app_context, batch=5) for _ in range(3)))
    while (await SlaEngine().run(app_context, batch=5)).counts["clocks"]:
        pass
    async with app_context.sessions() as session:
        events = {str(e.id): e for e in await session.scalars(select(SlaEvent))}
        outbox = [
            o.payload["event_id"]
            for o in await session.scalars(select(OutboxEvent))
            if o.event_type.startswith("sla.")
        ]
        audited = [
            row.metadata_["sla_event_id"]
            for row in await session.scalars(select(AuditLog).order_by(AuditLog.seq))
            if row.action.startswith("SLA_")
        ]
    assert len(events) == 12 * 6
    assert sorted(outbox) == sorted(audited) == sorted(events)
    async with app_context.sessions() as session:
        payload = (
            await session.scalars(
                select(OutboxEvent.payload).where(OutboxEvent.event_type == "sla.breach")
            )
        ).first()
    assert payload is not None
    assert payload["event_id"] in events
    assert payload["task"]["priority"] == "CRITICAL"
    assert payload["task"]["title"].startswith("incident ")
    verified = (await client.get("/audit-logs/verify", headers=admin_headers)).json()
    assert verified["valid"] is True, verified
    assert verified["checked"] >= len(events) + 18


@pytest.fixture
async def engine_app(database_url: str, clock: SettableClock) -> Any:
    settings = make_settings(database_url, engine_enabled=True, engine_interval_seconds=0.01)
    context = build_context(settings, clock)
    app = create_app(settings, context=context)
    async with app.router.lifespan_context(app):
        yield app, context
    await context.close()


async def test_embedded_engine_fires_without_being_called(
    engine_app: Any, clock: SettableClock
) -> None:
    app, _context = engine_app
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
        login = await client.post(
            "/auth/login", json={"username": "admin", "password": "Admin-Pass-123"}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        task_id = await _create(client, headers)
        clock.set(T0 + timedelta(minutes=15))
        for _ in range(500):  # the loop polls every 10 ms; give it up to ~5 s of real time
            # The round records its heartbeat after its last pass, a moment after the SLA
            # pass committed the events.
            workers = (await client.get("/health")).json()["services"]["workers"]
            if len(await _events(client, headers, task_id)) == 3 and workers["status"] == "healthy":
                break
            await asyncio.sleep(0.01)
        events = await _events(client, headers, task_id)
        metrics = (await client.get("/metrics")).text
        workers = (await client.get("/health")).json()["services"]["workers"]
    # The loop records its heartbeat: /health names it and the passes it runs.
    assert workers["status"] == "healthy", workers
    assert [(p["driver"], p["passes"]) for p in workers["processes"]] == [
        ("serve", list(ALL_PASSES))
    ]
    assert [e["event_type"] for e in events] == ["START_WARNING", "START_CRITICAL", "START_BREACH"]
    assert 'opsflow_sla_engine_lag_seconds_count{event_type="START_BREACH"} 1.0' in metrics
    assert [e["notify"] for e in events] == [False, False, True]


async def test_pause_and_resume_move_every_threshold(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    task_id = await _create(client, admin_headers)
    clock.set(T0 + timedelta(minutes=5))
    paused = await client.patch(
        f"/tasks/{task_id}/sla/pause", json={"reason": "waiting on vendor"}, headers=admin_headers
    )
    assert paused.status_code == 200, paused.text
    assert [c["status"] for c in paused.json()["sla_status"]["clocks"]] == ["PAUSED", "PAUSED"]
    again = await client.patch(f"/tasks/{task_id}/sla/pause", headers=admin_headers)
    assert again.status_code == 409

    assert await _at(clock, app_context, 60) == 0  # paused clocks never fire
    listed = await client.get("/tasks", params={"has_breach": "false"}, headers=admin_headers)
    assert [t["id"] for t in listed.json()["items"]] == [task_id]
    detail = (await client.get(f"/tasks/{task_id}/sla", headers=admin_headers)).json()
    start = detail["clocks"][0]
    assert start["kind"] == "START"
    assert start["status"] == "PAUSED"
    assert start["deadline"] is None
    assert start["remaining_seconds"] == 10 * 60
    assert start["pauses"] == [
        {
            "started_at": "2026-01-27T10:35:00Z",
            "ended_at": None,
            "actor": "admin",
            "reason": "waiting on vendor",
        }
    ]
    assert start["explanation"] == {
        "working_seconds": 300.0,
        "paused_seconds": 0.0,
        "outside_hours_seconds": 0.0,
    }

    resumed = await client.patch(f"/tasks/{task_id}/sla/resume", headers=admin_headers)
    assert resumed.status_code == 200, resumed.text
    # 55 paused minutes push the 15-minute response deadline from 10:45 to 11:40.
    assert resumed.json()["sla_status"]["start_deadline"] == "2026-01-27T11:40:00Z"
    not_paused = await client.patch(f"/tasks/{task_id}/sla/resume", headers=admin_headers)
    assert not_paused.status_code == 409
    assert await _at(clock, app_context, 66) == 0
    assert await _at(clock, app_context, 66.25) == 1
    detail = (await client.get(f"/tasks/{task_id}/sla", headers=admin_headers)).json()
    start = detail["clocks"][0]
    assert start["pauses"][0]["ended_at"] == "2026-01-27T11:30:00Z"
    assert start["explanation"] == {
        "working_seconds": 675.0,
        "paused_seconds": 3300.0,
        "outside_hours_seconds": 0.0,
    }
    assert [t["name"] for t in start["thresholds"] if t["fired"]] == ["START_WARNING"]
    assert start["thresholds"][-1]["due_at"] == "2026-01-27T11:40:00Z"
    audit = await client.get(
        "/audit-logs", params={"entity_id": task_id, "action": "SLA_PAUSED"}, headers=admin_headers
    )
    assert audit.json()["items"][0]["changes"]["sla_paused_at"]["to"] == "2026-01-27T10:35:00Z"


async def test_completing_a_paused_task_closes_the_pause(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    task_id = await _create(client, admin_headers)
    clock.set(T0 + timedelta(minutes=2))
    await client.patch(f"/tasks/{task_id}/start", headers=admin_headers)
    clock.set(T0 + timedelta(minutes=10))
    await client.patch(f"/tasks/{task_id}/sla/pause", headers=admin_headers)
    clock.set(T0 + timedelta(minutes=50))
    done = await client.patch(f"/tasks/{task_id}/complete", json={}, headers=admin_headers)
    assert done.status_code == 200, done.text
    assert done.json()["sla_paused_at"] is None
    resolve = (await client.get(f"/tasks/{task_id}/sla", headers=admin_headers)).json()["clocks"][1]
    assert resolve["status"] == "MET"
    assert resolve["pauses"][0]["ended_at"] == "2026-01-27T11:20:00Z"
    assert resolve["explanation"]["working_seconds"] == 600.0
    assert await _at(clock, app_context, 1000) == 0
