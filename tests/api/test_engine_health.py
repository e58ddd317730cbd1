"""`/health` from what the processes record: engine heartbeats (written at most every few
seconds by the round every driver runs), Redis when one is configured, and the migration
check, cached instead of run on every call."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from opsflow.app import create_app
from opsflow.clock import SettableClock
from opsflow.composition import build_context, engine_registry
from opsflow.context import AppContext
from opsflow.models.engine import EngineHeartbeat
from opsflow.workers.heartbeat import BEAT_EVERY_SECONDS, Heartbeat, stale_after
from opsflow.workers.rounds import run_round
from tests.conftest import T0, make_settings
from tests.factories import ALL_PASSES

ROOT = "http://testserver"


async def _health(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get(f"{ROOT}/health")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _rows(ctx: AppContext) -> list[EngineHeartbeat]:
    async with ctx.sessions() as session:
        return list(await session.scalars(select(EngineHeartbeat)))


async def test_no_engine_process_is_reported_as_not_running(client: httpx.AsyncClient) -> None:
    body = await _health(client)
    assert body["services"]["workers"] == {"status": "not_running", "processes": []}
    assert body["status"] == "healthy"


async def test_a_round_records_a_heartbeat_that_health_shows_then_reports_stale(
    client: httpx.AsyncClient, app_context: AppContext, clock: SettableClock
) -> None:
    engines = engine_registry(app_context.settings)
    heartbeat = Heartbeat(driver="engine", passes=engines.names, interval=1.0)
    await run_round(app_context, engines, heartbeat=heartbeat)

    workers = (await _health(client))["services"]["workers"]
    assert workers["status"] == "healthy"
    (process,) = workers["processes"]
    assert process["driver"] == "engine"
    assert process["passes"] == list(ALL_PASSES)
    assert process["pid"] == os.getpid()
    assert process["started_at"] == process["last_seen"] == "2026-01-27T10:30:00Z"
    assert process["rounds"] == 1
    assert process["stale"] is False

    # Nothing heard from it for longer than it may stay silent: stale, and the service says so.
    clock.advance(stale_after(1.0) + timedelta(seconds=1))
    body = await _health(client)
    assert body["services"]["workers"]["status"] == "stale"
    assert body["services"]["workers"]["processes"][0]["stale"] is True
    assert body["status"] == "degraded"

    # It runs a round again: seen now, healthy again.
    await run_round(app_context, engines, heartbeat=heartbeat)
    body = await _health(client)
    assert body["services"]["workers"]["status"] == "healthy"
    assert body["services"]["workers"]["processes"][0]["last_seen"] == "2026-01-27T10:30:31Z"
    assert body["status"] == "healthy"


async def test_heartbeat_is_written_at_most_every_few_seconds_and_removed_on_stop(
    app_context: AppContext, clock: SettableClock
) -> None:
    engines = engine_registry(app_context.settings)
    heartbeat = Heartbeat(driver="serve", passes=engines.names, interval=1.0)
    for _ in range(5):  # rounds back to back: one write
        await run_round(app_context, engines, heartbeat=heartbeat)
    (row,) = await _rows(app_context)
    assert (row.rounds, row.last_seen) == (1, T0)

    clock.advance(timedelta(seconds=BEAT_EVERY_SECONDS - 0.5))
    await run_round(app_context, engines, heartbeat=heartbeat)
    assert (await _rows(app_context))[0].rounds == 1  # still too soon

    clock.advance(timedelta(seconds=0.5))
    await run_round(app_context, engines, heartbeat=heartbeat)
    (row,) = await _rows(app_context)
    assert row.rounds == 7
    assert row.last_seen == T0 + timedelta(seconds=BEAT_EVERY_SECONDS)

    await heartbeat.stop(app_context)  # a clean stop is not a stale process
    assert await _rows(app_context) == []


async def test_rows_unseen_for_long_are_removed_by_the_next_process(
    app_context: AppContext, clock: SettableClock
) -> None:
    engines = engine_registry(app_context.settings)
    dead = Heartbeat(driver="engine", passes=["sla"], interval=1.0)
    await run_round(app_context, engines.select(["sla"]), heartbeat=dead)
    clock.advance(timedelta(hours=2))
    alive = Heartbeat(driver="engine", passes=["sla"], interval=1.0)
    await run_round(app_context, engines.select(["sla"]), heartbeat=alive)
    assert [row.id for row in await _rows(app_context)] == [alive.id]


async def test_migration_check_is_cached_then_refreshed(
    client: httpx.AsyncClient, clock: SettableClock
) -> None:
    first = (await _health(client))["services"]["database"]
    assert first["migrations_current"] is True
    # Checked when the app started (the clock has not moved since): not again per call.
    assert first["migrations_checked_at"] == "2026-01-27T10:30:00Z"
    clock.advance(timedelta(seconds=29))
    again = (await _health(client))["services"]["database"]
    assert again["migrations_checked_at"] == "2026-01-27T10:30:00Z"
    ready = await client.get(f"{ROOT}/ready")
    assert ready.json()["checks"]["migrations"] is True
    clock.advance(timedelta(seconds=1))
    later = (await _health(client))["services"]["database"]
    assert later["migrations_checked_at"] == "2026-01-27T10:30:30Z"


# --- Redis -------------------------------------------------------------------------------


@pytest.fixture
async def client_with_broker(database_url: str, clock: SettableClock) -> AsyncIterator[Any]:
    contexts: list[AppContext] = []

    def build(broker: str) -> httpx.AsyncClient:
        settings = make_settings(database_url, celery_broker_url=broker)
        context = build_context(settings, clock)
        contexts.append(context)
        transport = httpx.ASGITransport(app=create_app(settings, context=context))
        return httpx.AsyncClient(transport=transport, base_url=ROOT)

    yield build
    for context in contexts:
        await context.close()


async def test_redis_not_configured_is_said_so(client: httpx.AsyncClient) -> None:
    assert (await _health(client))["services"]["redis"] == {"status": "not_configured"}


async def test_configured_redis_that_does_not_answer_degrades_health(
    client_with_broker: Any,
) -> None:
    async with client_with_broker("redis://127.0.0.1:1/0") as c:  # nothing listens there
        body = await _health(c)
    assert body["services"]["redis"]["status"] == "unhealthy"
    assert body["services"]["redis"]["error"]
    assert body["status"] == "degraded"
    assert "127.0.0.1:1" not in str(body)


async def test_configured_redis_reports_its_ping_latency(client_with_broker: Any) -> None:
    url = os.environ.get("OPSFLOW_TEST_REDIS_URL")
    if not url:
        pytest.skip("needs Redis: set OPSFLOW_TEST_REDIS_URL")
    async with client_with_broker(url) as c:
        body = await _health(c)
    redis = body["services"]["redis"]
    assert redis["status"] == "healthy", redis
    assert isinstance(redis["latency_ms"], int | float)
    assert redis["latency_ms"] >= 0
    assert body["status"] == "healthy"


async def test_heartbeat_rows_count_one_per_process(app_context: AppContext) -> None:
    engines = engine_registry(app_context.settings)
    for _ in range(3):
        await run_round(
            app_context, engines, heartbeat=Heartbeat(driver="engine", passes=["sla"], interval=1.0)
        )
    async with app_context.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(EngineHeartbeat)) == 3


async def test_a_heartbeat_that_cannot_be_written_never_fails_the_round(
    tmp_path: Any, clock: SettableClock
) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'unmigrated.db'}")
    context = build_context(settings, clock)
    try:
        heartbeat = Heartbeat(driver="engine", passes=["sla"], interval=1.0)
        await heartbeat.beat(context)  # no table: logged, not raised
        assert heartbeat.rounds == 1
        await heartbeat.stop(context)  # nothing was written: nothing to remove
    finally:
        await context.close()
