"""Heartbeat monitors with the settable clock: signals, states, incidents, cron across DST."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select

from opsflow.app import create_app
from opsflow.clock import SettableClock
from opsflow.composition import build_context, engine_registry
from opsflow.context import AppContext
from opsflow.models.audit import AuditLog
from opsflow.models.heartbeat import HeartbeatMonitor, HeartbeatPing
from opsflow.models.task import Task
from opsflow.workers.contract import PassReport
from opsflow.workers.rounds import run_round
from tests.conftest import assert_error, make_settings
from tests.factories import ADMIN_PASSWORD, login, make_user

Headers = dict[str, str]
PARIS = ZoneInfo("Europe/Paris")


async def _monitor(client: httpx.AsyncClient, headers: Headers, **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/heartbeat-monitors", json={"name": "nightly-backup", **body}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _view(client: httpx.AsyncClient, headers: Headers, monitor_id: str) -> dict[str, Any]:
    response = await client.get(f"/heartbeat-monitors/{monitor_id}", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _signal(
    client: httpx.AsyncClient, key: str, suffix: str = "", method: str = "GET", **params: str
) -> dict[str, Any]:
    path = f"/heartbeats/{key}" + (f"/{suffix}" if suffix else "")
    response = await client.request(method, path, params=params)
    assert response.status_code == 200, response.text
    return dict(response.json()) if method != "HEAD" else {}


async def _engine(ctx: AppContext) -> PassReport:
    engine = engine_registry(ctx.settings).get("heartbeats")
    return await engine.run(ctx, batch=engine.batch)


async def _incidents(ctx: AppContext) -> list[Task]:
    async with ctx.sessions() as session:
        query = select(Task).where(Task.source == "heartbeat").order_by(Task.created_at)
        return list(await session.scalars(query))


async def _task(client: httpx.AsyncClient, headers: Headers, task_id: str) -> dict[str, Any]:
    response = await client.get(f"/tasks/{task_id}", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_a_missed_period_opens_one_incident_after_the_grace_and_a_ping_resolves_it(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext, clock: Any
) -> None:
    monitor = await _monitor(
        client, admin_headers, period_seconds=300, grace_seconds=60, priority="CRITICAL"
    )
    assert monitor["state"] == "new"
    assert monitor["ping_url"].endswith(f"/api/v1/heartbeats/{monitor['ping_key']}")
    key, monitor_id = monitor["ping_key"], monitor["id"]

    # Not armed before the first signal: nothing is due however long it waits.
    clock.advance(hours=3)
    assert (await _engine(app_context)).counts["monitors"] == 0

    armed = clock.now()
    assert (await _signal(client, key))["state"] == "up"
    view = await _view(client, admin_headers, monitor_id)
    assert view["next_due_at"] == (armed + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")

    clock.set(armed + timedelta(minutes=5) - timedelta(seconds=1))
    assert (await _view(client, admin_headers, monitor_id))["state"] == "up"
    clock.set(armed + timedelta(minutes=5))
    assert (await _view(client, admin_headers, monitor_id))["state"] == "late"
    clock.set(armed + timedelta(minutes=6) - timedelta(seconds=1))
    report = await _engine(app_context)
    assert report.counts["incidents"] == 0
    assert report.next_due == armed + timedelta(minutes=6)
    assert (await _view(client, admin_headers, monitor_id))["state"] == "late"
    assert await _incidents(app_context) == []

    clock.set(armed + timedelta(minutes=6))
    report = await _engine(app_context)
    assert report.counts == {"monitors": 1, "down": 1, "overrun": 0, "incidents": 1}
    view = await _view(client, admin_headers, monitor_id)
    assert view["state"] == "down"
    [incident] = await _incidents(app_context)
    assert view["open_incident_id"] == str(incident.id)
    task = await _task(client, admin_headers, str(incident.id))
    assert (task["task_type"], task["priority"], task["status"]) == (
        "INCIDENT",
        "CRITICAL",
        "CREATED",
    )
    assert task["source"] == "heartbeat"

    # The whole round (the relay hands the incident's and the monitor's events on) runs clean.
    round_report = await run_round(app_context, engine_registry(app_context.settings))
    assert round_report.failed == []
    assert round_report.get("relay") is not None

    # Each transition happens once: later passes find nothing due.
    clock.advance(hours=1)
    assert (await _engine(app_context)).counts["monitors"] == 0
    assert len(await _incidents(app_context)) == 1

    result = await _signal(client, key, method="POST")
    assert (result["effect"], result["state"]) == ("resolved", "up")
    assert (await _task(client, admin_headers, str(incident.id)))["status"] == "COMPLETED"
    assert (await _view(client, admin_headers, monitor_id))["open_incident_id"] is None
    async with app_context.sessions() as session:
        actions = set(
            await session.scalars(select(AuditLog.action).where(AuditLog.entity_id == incident.id))
        )
    assert {"TASK_CREATED", "TASK_COMPLETED"} <= actions

    pings = await client.get(f"/heartbeat-monitors/{monitor_id}/pings", headers=admin_headers)
    assert pings.status_code == 200, pings.text
    effects = [(p["kind"], p["method"], p["effect"]) for p in pings.json()["items"]]
    assert effects == [("success", "POST", "resolved"), ("success", "GET", "success")]


async def test_failures_and_exit_codes_open_one_incident_while_open(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    monitor = await _monitor(client, admin_headers, period_seconds=3600)
    key = monitor["ping_key"]
    assert (await _signal(client, key, "fail"))["effect"] == "opened"
    assert (await _signal(client, key, "fail"))["effect"] == "fail"  # already open
    assert (await _signal(client, key, "2"))["state"] == "down"
    assert len(await _incidents(app_context)) == 1
    assert (await _signal(client, key, "0"))["effect"] == "resolved"
    assert (await _signal(client, key, "137"))["effect"] == "opened"
    first, second = await _incidents(app_context)
    assert first.id != second.id
    assert first.external_id != second.external_id
    assert second.title.endswith("the job failed with exit code 137")
    assert (await _signal(client, key, method="HEAD")) == {}
    assert (await _view(client, admin_headers, monitor["id"]))["state"] == "up"


async def test_a_closed_incident_does_not_block_the_next_one(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    monitor = await _monitor(client, admin_headers, period_seconds=3600)
    await _signal(client, monitor["ping_key"], "fail")
    [incident] = await _incidents(app_context)
    response = await client.delete(f"/tasks/{incident.id}", headers=admin_headers)
    assert response.status_code == 204, response.text
    assert (await _view(client, admin_headers, monitor["id"]))["open_incident_id"] is None
    assert (await _signal(client, monitor["ping_key"], "fail"))["effect"] == "opened"
    assert len(await _incidents(app_context)) == 2


async def test_run_ids_pair_starts_with_finishes(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext, clock: Any
) -> None:
    monitor = await _monitor(
        client, admin_headers, period_seconds=86400, grace_seconds=3600, max_run_seconds=600
    )
    key = monitor["ping_key"]
    started = clock.now()
    await _signal(client, key, "start", rid="a")
    await _signal(client, key, "start", rid="b")
    assert (await _view(client, admin_headers, monitor["id"]))["running"] == 2
    clock.advance(minutes=4)
    await _signal(client, key, rid="a")  # run a finished; run b still runs
    assert (await _view(client, admin_headers, monitor["id"]))["running"] == 1

    clock.set(started + timedelta(seconds=599))
    assert (await _engine(app_context)).counts["monitors"] == 0
    clock.set(started + timedelta(seconds=600))
    report = await _engine(app_context)
    assert (report.counts["overrun"], report.counts["incidents"]) == (1, 1)
    [incident] = await _incidents(app_context)
    assert "did not finish within 600 s" in incident.title
    view = await _view(client, admin_headers, monitor["id"])
    assert (view["state"], view["running"]) == ("down", 0)

    pings = (
        await client.get(f"/heartbeat-monitors/{monitor['id']}/pings", headers=admin_headers)
    ).json()["items"]
    finished = next(p for p in pings if p["rid"] == "a" and p["kind"] == "success")
    assert finished["duration_seconds"] == 240


async def test_a_finished_run_does_not_alert(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext, clock: Any
) -> None:
    monitor = await _monitor(
        client, admin_headers, period_seconds=86400, grace_seconds=3600, max_run_seconds=600
    )
    key = monitor["ping_key"]
    await _signal(client, key, "start", rid="nightly-1")
    clock.advance(minutes=9)
    await _signal(client, key, "0", rid="nightly-1")
    clock.advance(minutes=30)
    await _engine(app_context)
    assert await _incidents(app_context) == []
    assert (await _view(client, admin_headers, monitor["id"]))["state"] == "up"


async def test_a_paused_monitor_records_signals_and_never_alerts(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext, clock: Any
) -> None:
    monitor = await _monitor(client, admin_headers, period_seconds=300, grace_seconds=60)
    key = monitor["ping_key"]
    await _signal(client, key)
    response = await client.patch(
        f"/heartbeat-monitors/{monitor['id']}", json={"paused": True}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "paused"
    result = await _signal(client, key, "fail")
    assert (result["effect"], result["state"]) == ("paused", "paused")
    clock.advance(hours=2)
    assert (await _engine(app_context)).counts["monitors"] == 0
    assert await _incidents(app_context) == []
    pings = await client.get(f"/heartbeat-monitors/{monitor['id']}/pings", headers=admin_headers)
    assert [p["effect"] for p in pings.json()["items"]] == ["paused", "success"]

    # Resumed, it waits for the next signal before it is armed again.
    response = await client.patch(
        f"/heartbeat-monitors/{monitor['id']}", json={"paused": False}, headers=admin_headers
    )
    assert response.json()["state"] == "new"
    clock.advance(hours=2)
    assert (await _engine(app_context)).counts["monitors"] == 0


def _utc(local: datetime) -> datetime:
    return local.replace(tzinfo=PARIS).astimezone(UTC)


def _z(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def test_a_cron_monitor_in_paris_is_right_across_spring_forward(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext, clock: Any
) -> None:
    # 2026-03-29: Paris clocks jump from 02:00 to 03:00; a 02:30 job runs at 03:00 local.
    monitor = await _monitor(
        client, admin_headers, cron="30 2 * * *", timezone="Europe/Paris", grace_seconds=600
    )
    clock.set(_utc(datetime(2026, 3, 28, 2, 30)))
    admin_headers = await login(client, "admin", ADMIN_PASSWORD)  # a token of that day
    await _signal(client, monitor["ping_key"])
    expected = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert expected == _utc(datetime(2026, 3, 29, 3, 0))
    assert (await _view(client, admin_headers, monitor["id"]))["next_due_at"] == _z(expected)

    clock.set(expected + timedelta(seconds=599))
    await _engine(app_context)
    assert await _incidents(app_context) == []
    clock.set(expected + timedelta(seconds=600))
    assert (await _engine(app_context)).counts["incidents"] == 1

    # The next day is 02:30 CEST again (00:30 UTC), not 01:30 UTC.
    await _signal(client, monitor["ping_key"])
    view = await _view(client, admin_headers, monitor["id"])
    assert view["next_due_at"] == _z(_utc(datetime(2026, 3, 30, 2, 30)))
    assert view["next_due_at"] == "2026-03-30T00:30:00Z"


async def test_a_cron_monitor_in_paris_is_right_across_fall_back(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext, clock: Any
) -> None:
    # 2026-10-25: Paris clocks go back from 03:00 to 02:00 (CEST +02:00 -> CET +01:00).
    early = await _monitor(
        client, admin_headers, cron="30 1 * * *", timezone="Europe/Paris", grace_seconds=600
    )
    clock.set(datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
    admin_headers = await login(client, "admin", ADMIN_PASSWORD)  # a token of that day
    await _signal(client, early["ping_key"])
    # 01:30 on the fall-back day is still summer time: 23:30 UTC the day before.
    assert (await _view(client, admin_headers, early["id"]))["next_due_at"] == (
        "2026-10-24T23:30:00Z"
    )
    clock.set(datetime(2026, 10, 24, 23, 30, tzinfo=UTC))
    await _signal(client, early["ping_key"])
    # The day after, 01:30 is winter time: 00:30 UTC, 25 hours later.
    assert (await _view(client, admin_headers, early["id"]))["next_due_at"] == (
        "2026-10-26T00:30:00Z"
    )

    # 02:30 happens twice on that day; the job is expected once, at the first one.
    twice = await _monitor(
        client, admin_headers, cron="30 2 * * *", timezone="Europe/Paris", grace_seconds=600
    )
    clock.set(datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
    await _signal(client, twice["ping_key"])
    assert (await _view(client, admin_headers, twice["id"]))["next_due_at"] == (
        "2026-10-25T00:30:00Z"
    )
    clock.set(datetime(2026, 10, 25, 0, 30, tzinfo=UTC))
    await _signal(client, twice["ping_key"])
    assert (await _view(client, admin_headers, twice["id"]))["next_due_at"] == (
        "2026-10-26T01:30:00Z"
    )
    # No incident for the second 02:30 (01:30 UTC) that nobody expects.
    clock.set(datetime(2026, 10, 25, 2, 0, tzinfo=UTC))
    await _engine(app_context)
    assert await _incidents(app_context) == []


async def test_the_key_rotates_and_managers_write_but_others_only_read(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    manager = await make_user(client, admin_headers, "manager")
    viewer = await make_user(client, admin_headers, "viewer")
    monitor = await _monitor(client, manager.headers, period_seconds=600)
    response = await client.post(
        "/heartbeat-monitors", json={"name": "x", "period_seconds": 600}, headers=viewer.headers
    )
    assert_error(response, 403, "FORBIDDEN")
    listed = await client.get("/heartbeat-monitors", headers=viewer.headers)
    assert listed.json()["pagination"]["total_items"] == 1
    response = await client.post(
        f"/heartbeat-monitors/{monitor['id']}/rotate-key", headers=manager.headers
    )
    assert response.status_code == 200, response.text
    new_key = response.json()["ping_key"]
    assert new_key != monitor["ping_key"]
    assert_error(await client.get(f"/heartbeats/{monitor['ping_key']}"), 404, "NOT_FOUND")
    await _signal(client, new_key)
    response = await client.patch(
        f"/heartbeat-monitors/{monitor['id']}", json={"grace_seconds": 90}, headers=manager.headers
    )
    assert response.status_code == 200, response.text
    response = await client.delete(f"/heartbeat-monitors/{monitor['id']}", headers=manager.headers)
    assert response.status_code == 204, response.text
    assert_error(await client.get(f"/heartbeats/{new_key}"), 404, "NOT_FOUND")

    # Audited, without the key (the key is the secret).
    async with app_context.sessions() as session:
        rows = list(
            await session.scalars(
                select(AuditLog)
                .where(AuditLog.entity_id == uuid.UUID(monitor["id"]))
                .order_by(AuditLog.timestamp, AuditLog.id)
            )
        )
    assert {r.action for r in rows} == {
        "HEARTBEAT_MONITOR_CREATED",
        "HEARTBEAT_MONITOR_KEY_ROTATED",
        "HEARTBEAT_MONITOR_UPDATED",
        "HEARTBEAT_MONITOR_DELETED",
    }
    updated = next(r for r in rows if r.action == "HEARTBEAT_MONITOR_UPDATED")
    assert updated.changes == {"grace_seconds": {"from": 300, "to": 90}}
    text = repr([(r.changes, r.new_state, r.previous_state, r.metadata_) for r in rows])
    assert monitor["ping_key"] not in text
    assert new_key not in text


async def _counts(ctx: AppContext) -> tuple[int, int]:
    async with ctx.sessions() as session:
        monitors = await session.scalar(select(func.count()).select_from(HeartbeatMonitor))
        pings = await session.scalar(select(func.count()).select_from(HeartbeatPing))
    return int(monitors or 0), int(pings or 0)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "cron": "61 * * * *"},
        {"name": "x", "cron": "* * *"},
        {"name": "x", "cron": "0 0 * * * *"},
        {"name": "x", "cron": "0 0 30 2 *"},
        {"name": "x", "cron": "@daily"},
        {"name": "x", "cron": "0 3 * * *", "timezone": "Mars/Olympus_Mons"},
        {"name": "x", "cron": "0 3 * * *", "timezone": "Europe/Paris\x00"},
        {"name": "bad\x00name", "period_seconds": 600},
        {"name": "x", "cron": "0 3 * * *\x00"},
        {"name": "x", "period_seconds": -300},
        {"name": "x", "period_seconds": 600, "grace_seconds": -1},
        {"name": "x", "period_seconds": 600, "max_run_seconds": 0},
        {"name": "x"},
        {"name": "x", "period_seconds": 600, "cron": "0 3 * * *"},
        {"name": "x", "period_seconds": 600, "priority": "URGENT"},
        {"name": "x", "period_seconds": 600, "team_id": "00000000-0000-0000-0000-000000000001"},
        {"name": "x", "period_seconds": 600, "surprise": True},
    ],
)
async def test_bad_monitor_input_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext, body: Any
) -> None:
    response = await client.post("/heartbeat-monitors", json=body, headers=admin_headers)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error.get("details"), error
    assert await _counts(app_context) == (0, 0)


async def test_bad_edits_are_refused(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    monitor = await _monitor(client, admin_headers, period_seconds=600)
    for body in (
        {"cron": "not a cron"},
        {"timezone": "Nowhere/Else", "cron": "0 3 * * *"},
        {"period_seconds": None},
        {"name": None},
        {"period_seconds": 0},
    ):
        response = await client.patch(
            f"/heartbeat-monitors/{monitor['id']}", json=body, headers=admin_headers
        )
        assert_error(response, 400, "VALIDATION_ERROR")
    view = await _view(client, admin_headers, monitor["id"])
    assert (view["period_seconds"], view["cron"]) == (600, None)
    # A valid switch to cron drops the period.
    response = await client.patch(
        f"/heartbeat-monitors/{monitor['id']}",
        json={"cron": "*/10 * * * *", "timezone": "Asia/Tokyo"},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    assert (response.json()["period_seconds"], response.json()["cron"]) == (None, "*/10 * * * *")


async def test_bad_signals_answer_4xx_and_write_nothing(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    monitor = await _monitor(client, admin_headers, period_seconds=600)
    key = monitor["ping_key"]
    assert_error(await client.get("/heartbeats/no-such-key"), 404, "NOT_FOUND")
    assert_error(await client.post("/heartbeats/no-such-key/fail"), 404, "NOT_FOUND")
    assert_error(await client.get("/heartbeats/bad%00key"), 404, "NOT_FOUND")
    assert_error(await client.get("/heartbeats/" + "k" * 65), 404, "NOT_FOUND")
    for suffix in ("stop", "256", "-1", "1e3", "%00"):
        assert_error(await client.get(f"/heartbeats/{key}/{suffix}"), 400, "VALIDATION_ERROR")
    for rid in ("a\x00b", "r" * 65, ""):
        response = await client.get(f"/heartbeats/{key}", params={"rid": rid})
        assert_error(response, 400, "VALIDATION_ERROR")
    assert await _counts(app_context) == (1, 0)
    assert (await _view(client, admin_headers, monitor["id"]))["state"] == "new"
    # A body with NUL bytes is stored, NUL replaced: the signal itself is valid.
    response = await client.post(f"/heartbeats/{key}", content=b"log line\x00\xff tail")
    assert response.status_code == 200, response.text
    pings = await client.get(f"/heartbeat-monitors/{monitor['id']}/pings", headers=admin_headers)
    assert pings.json()["items"][0]["body"] == "log line\ufffd\ufffd tail"


async def test_pings_are_kept_bounded(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    monitor = await _monitor(client, admin_headers, period_seconds=600)
    for _ in range(105):
        await _signal(client, monitor["ping_key"])
    assert await _counts(app_context) == (1, 100)
    pings = await client.get(
        f"/heartbeat-monitors/{monitor['id']}/pings", params={"limit": 100}, headers=admin_headers
    )
    assert [p["seq"] for p in pings.json()["items"]] == list(range(105, 5, -1))


async def test_the_database_down_answers_503(tmp_path: Any) -> None:
    settings = make_settings("postgresql://postgres@127.0.0.1:9/nowhere")
    context = build_context(settings, SettableClock())
    app = create_app(settings, context=context)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
            for suffix in ("", "/start", "/fail", "/0"):
                response = await client.post(f"/heartbeats/abcdefghijklmnop{suffix}")
                error = assert_error(response, 503, "SERVICE_UNAVAILABLE")
                assert response.headers["Retry-After"] == "1"
                assert error["retry_after_seconds"] == 1
    finally:
        await context.close()


@pytest.mark.postgres
async def test_concurrent_passes_open_each_incident_once(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext, clock: Any
) -> None:
    keys = []
    for index in range(30):
        monitor = await _monitor(
            client, admin_headers, name=f"job-{index}", period_seconds=300, grace_seconds=60
        )
        keys.append(monitor["ping_key"])
    for key in keys:
        await _signal(client, key)
    clock.advance(minutes=7)
    engine = engine_registry(app_context.settings).get("heartbeats")
    reports = await asyncio.gather(*(engine.run(app_context, batch=10) for _ in range(4)))
    while any(r.backlog for r in reports):
        reports = await asyncio.gather(*(engine.run(app_context, batch=10) for _ in range(4)))
    incidents = await _incidents(app_context)
    assert len(incidents) == 30
    assert len({t.external_id for t in incidents}) == 30
