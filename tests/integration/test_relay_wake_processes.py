"""The relay wakes on commit in real processes, with engines that poll only once an hour.

* `opsflow serve` with its embedded engines (SQLite or PostgreSQL): a task created through
  the API reaches a WebSocket subscriber, through the relay woken in process.
* On PostgreSQL, `opsflow serve --no-engine` and a separate `opsflow engine`: the API's
  commits notify, the engine listens and relays (a webhook delivery arrives at a real HTTP
  sink); a burst of commits made while the relay is held (the test holds the lock its
  stream numbering takes) is relayed by exactly one more pass, as the engine's own
  `relay_pass` lines tell.

No clock is moved: with an interval of an hour, only a wake can start these rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from opsflow.db import create_engine
from opsflow.events import wake
from opsflow.models.outbox import OutboxEvent
from opsflow.realtime.consumer import STREAM_LOCK_KEY
from tests.api.ws_support import SocketClient
from tests.factories import login, make_task
from tests.processes import Engines, opsflow_serve
from tests.sinks import HttpSink

pytestmark = [pytest.mark.slow]

ADMIN_PASSWORD = "Relay-Wake-Admin-Pass-1"
HOUR = "3600"
GIVE_UP_SECONDS = 60  # a safety net against a hung test, not a timing assertion


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `check` until it answers True, at most a minute."""
    async with asyncio.timeout(GIVE_UP_SECONDS):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)  # polling the database or a sink for `what`


async def test_the_embedded_relay_streams_a_new_task_without_waiting_for_its_poll(
    database_url: str, tmp_path: Path
) -> None:
    with opsflow_serve(
        tmp_path, database_url, ADMIN_PASSWORD, OPSFLOW_ENGINE_INTERVAL_SECONDS=HOUR
    ) as base:
        async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30) as api:
            admin = await login(api, "admin", ADMIN_PASSWORD)
            token = admin["Authorization"].removeprefix("Bearer ")
            url = base.replace("http://", "ws://") + "/api/v1/ws"
            async with SocketClient(url, token) as ws:
                await ws.subscribe(["tasks"])
                task = await make_task(api, admin, title="woken")
                frame = await ws.wait_for(
                    lambda f: f.get("type") == "task.created" and f["task"]["id"] == task["id"]
                )
        assert frame["task"]["title"] == "woken"


@pytest.mark.postgres
async def test_an_engine_process_is_woken_by_the_api_commits_and_coalesces_a_burst(
    database_url: str, db: AsyncEngine, tmp_path: Path
) -> None:
    sink = HttpSink()
    await sink.start()
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(
            opsflow_serve(tmp_path, database_url, ADMIN_PASSWORD, no_engine=True)
        )
        engines = Engines(
            database_url, tmp_path, batch=500, arguments=["--passes", "all", "--interval", HOUR]
        )
        stack.callback(engines.close)
        engine = engines.start()
        try:
            async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30) as api:
                await _scenario(api, db, sink, engines)
        except BaseException:
            print(engines.report())
            print((tmp_path / "serve.log").read_text()[-4000:])
            raise
        finally:
            await sink.stop()
        assert engine.alive(), engines.report()


async def _listening(db: AsyncEngine) -> bool:
    async with db.connect() as connection:
        found = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": wake.APPLICATION_NAME},
        )
    return bool(found)


async def _relay_waits_for_the_lock(db: AsyncEngine) -> bool:
    async with db.connect() as connection:
        waiting = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND NOT l.granted "
                "AND d.datname = current_database()"
            )
        )
    return bool(waiting)


async def _unpublished(db: AsyncEngine) -> int:
    async with db.connect() as connection:
        return int(
            await connection.scalar(select(func.count()).where(OutboxEvent.published_at.is_(None)))
            or 0
        )


async def _scenario(
    api: httpx.AsyncClient, db: AsyncEngine, sink: HttpSink, engines: Engines
) -> None:
    admin = await login(api, "admin", ADMIN_PASSWORD)
    created = await api.post(
        "/webhooks",
        json={"name": "wake", "url": f"{sink.url}/hook", "event_types": ["task.created"]},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    await _until(lambda: _listening(db), "the engine's listening connection")
    (engine,) = engines.all

    # One task: relayed and its webhook delivered, though the engine polls once an hour.
    first = await make_task(api, admin, title="first")

    async def delivered() -> bool:
        return any(first["id"] in r.body.decode() for r in sink.requests)

    await _until(delivered, "the first task's webhook delivery")

    # A burst while the relay is held inside its pass: one more pass takes all of it.
    async with db.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": STREAM_LOCK_KEY})
        await holder.commit()
        await make_task(api, admin, title="held")
        await _until(lambda: _relay_waits_for_the_lock(db), "the relay waiting for the lock")
        passes_before = len(_relay_passes(engine.records()))
        burst = [await make_task(api, admin, title=f"burst {n}") for n in range(20)]
        await holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": STREAM_LOCK_KEY})
        await holder.commit()

    async def all_relayed() -> bool:
        return await _unpublished(db) == 0 and len(sink.requests) >= 22

    await _until(all_relayed, "every event relayed and delivered")
    bodies = [r.body.decode() for r in sink.requests]
    assert all(any(t["id"] in body for body in bodies) for t in burst)
    passes = _relay_passes(engine.records())[passes_before:]
    # The held pass, then one pass for all twenty tasks committed meanwhile.
    assert len(passes) == 2, passes


def _relay_passes(records: list[dict[str, object]]) -> list[dict[str, object]]:
    return [r for r in records if r.get("event") == "relay_pass"]
