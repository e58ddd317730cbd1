"""The WebSocket stream across processes: two `opsflow serve --no-engine` instances and one
`opsflow engine` on PostgreSQL, fanned out through a throw-away Redis that is restarted in
the middle of the test.

Clients on either instance receive what the engine commits; a comment written through one
instance reaches the task's subscribers on the other, an internal one never a viewer; a
client that reconnects with `since` gets exactly what it missed; across the Redis restart
every client still gets every event of its channels, in order, exactly once (compared with
the outbox itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from opsflow.db import create_engine
from opsflow.realtime.bus import channel_name
from tests.api.ws_support import SocketClient
from tests.factories import login, make_task, make_user
from tests.processes import Engines, RedisServer, opsflow_serve, redis_server

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("redis-server") is None and os.environ.get("OPSFLOW_REQUIRE_SERVICES") != "1",
        reason="needs redis-server on the PATH (a throw-away one is started and restarted)",
    ),
]

ADMIN_PASSWORD = "Realtime-Admin-Pass-1"
INCIDENT = {
    "task_type": "INCIDENT",
    "priority": "CRITICAL",
    "start_sla_minutes": 15,
    "resolve_sla_minutes": 120,
}
# The START clock moved a day into the past: every threshold of it is due at once, with
# no wall-clock wait.
OVERDUE_SQL = (
    "UPDATE sla_clocks SET started_at = started_at - interval '1 day', "
    "deadline = deadline - interval '1 day', next_fire_at = next_fire_at - interval '1 day' "
    "WHERE task_id = :task AND kind = 'START'",
    "UPDATE tasks SET start_deadline = start_deadline - interval '1 day' WHERE id = :task",
)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    assert database_url.startswith("postgresql"), "this test needs PostgreSQL"
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


def _ws(base: str) -> str:
    return base.replace("http://", "ws://") + "/api/v1/ws"


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def _rename(
    client: httpx.AsyncClient, headers: dict[str, str], task: str, title: str
) -> None:
    current = await client.get(f"/tasks/{task}", headers=headers)
    assert current.status_code == 200, current.text
    response = await client.patch(
        f"/tasks/{task}",
        json={"title": title},
        headers={**headers, "If-Match": current.headers["ETag"]},
    )
    assert response.status_code == 200, response.text


async def _listeners_subscribed(redis: RedisServer, count: int) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(redis.url(0))
    try:
        async with asyncio.timeout(60):
            while True:
                (_, subscribed), *_ = await client.pubsub_numsub(channel_name(redis.url(0)))
                if subscribed >= count:
                    return
                await asyncio.sleep(0.05)  # polling Redis for the instances' subscriptions
    finally:
        await client.aclose()


def _cut_subscriptions(redis: RedisServer) -> None:
    from redis import Redis

    with Redis.from_url(redis.url(0)) as client:
        client.client_kill_filter(_type="pubsub")


async def _comment(
    client: httpx.AsyncClient, headers: dict[str, str], task: str, body: str, **extra: Any
) -> None:
    response = await client.post(
        f"/tasks/{task}/comments", json={"body": body, **extra}, headers=headers
    )
    assert response.status_code == 201, response.text


def _comment_said(body: str) -> Any:
    return lambda f: (
        f.get("type") == "comment.created" and (f["data"].get("comment") or {}).get("body") == body
    )


def _titled(title: str) -> Any:
    return lambda f: f.get("type") == "task.updated" and f["task"].get("title") == title


async def _streamed(db: AsyncEngine, task: str, *, internal: bool = True) -> list[tuple[int, str]]:
    """The events of the task's channel as the outbox holds them — its own, and its
    comments' (without internal ones unless `internal`): (id, type) in id order."""
    async with db.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT stream_seq, event_type, payload->>'internal' FROM outbox_events "
                "WHERE (aggregate_id = :task OR (aggregate_type = 'comment' "
                "AND payload->>'task_id' = :text)) AND stream_seq IS NOT NULL "
                "ORDER BY stream_seq"
            ),
            {"task": uuid.UUID(task), "text": task},
        )
        return [(int(r[0]), str(r[1])) for r in rows if internal or r[2] != "true"]


def _seen(ws: SocketClient) -> list[tuple[int, str]]:
    return [(int(f["id"]), str(f["type"])) for f in ws.events()]


async def test_two_instances_one_engine_replay_and_a_redis_restart(
    database_url: str, db: AsyncEngine, tmp_path: Path
) -> None:
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server(tmp_path))
        env = {"REDIS_URL": redis.url(0)}
        one = stack.enter_context(
            opsflow_serve(
                tmp_path, database_url, ADMIN_PASSWORD, name="serve-1", no_engine=True, **env
            )
        )
        two = stack.enter_context(
            opsflow_serve(
                tmp_path, database_url, ADMIN_PASSWORD, name="serve-2", no_engine=True, **env
            )
        )
        engines = Engines(
            database_url,
            tmp_path,
            batch=500,
            arguments=["--passes", "all", "--interval", "0.1"],
            env=env,
        )
        stack.callback(engines.close)
        engine = engines.start()
        try:
            await _scenario(db, one, two, redis)
        except BaseException:
            print(engines.report())
            for name in ("serve-1", "serve-2"):
                print(f"--- {name}\n{(tmp_path / f'{name}.log').read_text()[-4000:]}")
            raise
        assert engine.alive(), engines.report()


async def _scenario(db: AsyncEngine, one: str, two: str, redis: RedisServer) -> None:
    api1 = httpx.AsyncClient(base_url=f"{one}/api/v1", timeout=30)
    api2 = httpx.AsyncClient(base_url=f"{two}/api/v1", timeout=30)
    async with api1, api2:
        admin = await login(api1, "admin", ADMIN_PASSWORD)
        manager = await make_user(api1, admin, "manager")
        viewer = await make_user(api1, admin, "viewer")
        task = (await make_task(api1, admin, **INCIDENT))["id"]
        channels = ["alerts", f"task:{task}"]

        # A on instance 1 (admin), B on instance 2 (a manager): every event of the task
        # from the first one on (since 0: replayed, then live).
        async with (
            SocketClient(_ws(one), _token(admin)) as a,
            SocketClient(_ws(two), _token(manager.headers)) as b,
        ):
            for ws in (a, b):
                await ws.subscribe(channels, since=0)
                await ws.wait_for(lambda f: f.get("type") == "task.created")

            # An SLA breach committed by the engine process reaches both instances.
            async with db.begin() as connection:
                for statement in OVERDUE_SQL:
                    await connection.execute(text(statement), {"task": uuid.UUID(task)})
            for name, ws in (("A on instance 1", a), ("B on instance 2", b)):
                breach = await ws.wait_for(lambda f: f.get("type") == "sla.breach")
                index = ws.frames.index(breach)
                occurred = datetime.fromisoformat(breach["occurred_at"].replace("Z", "+00:00"))
                latency = (ws.arrived[index] - occurred.timestamp()) * 1000
                print(f"sla.breach commit -> receipt, {name}: {latency:.1f} ms")
                assert breach["task"]["id"] == task
                assert breach["channels"] == sorted(channels)

            # The breach escalates (the default policy's first step); C joins after that.
            await a.wait_for(lambda f: f.get("type") == "escalation.fired")

            # C (on instance 2) disconnects, misses three events, reconnects with since.
            async with SocketClient(_ws(two), _token(manager.headers)) as c:
                await c.subscribe([f"task:{task}"], since=0)
                await c.wait_for(lambda f: f.get("type") == "escalation.fired")
                await c.settle()
                last = c.events()[-1]["id"]
            for n in (1, 2, 3):
                await _rename(api1, admin, task, f"missed-{n}")
            await a.wait_for(_titled("missed-3"))
            async with SocketClient(_ws(two), _token(manager.headers)) as c:
                await c.subscribe([f"task:{task}"], since=last)
                await c.settle()
                missed = c.events()
                assert [(f["type"], f["task"]["title"]) for f in missed] == [
                    ("task.updated", f"missed-{n}") for n in (1, 2, 3)
                ]
                ids = [f["id"] for f in missed]
                assert ids == sorted(set(ids))
                assert ids[0] > last

                # Comments written through instance 1 reach B on instance 2; the viewer
                # (instance 2, the task's channel) never gets the internal one.
                async with SocketClient(_ws(two), _token(viewer.headers)) as v:
                    await v.subscribe([f"task:{task}"], since=0)
                    await _comment(api1, admin, task, "public note")
                    await _comment(api1, admin, task, "internal note", internal=True)
                    await _comment(api1, admin, task, "after the internal one")
                    for ws in (a, b, c, v):
                        await ws.wait_for(_comment_said("after the internal one"))
                    await v.settle()
                    said_to_b = [
                        f["data"]["comment"]["body"]
                        for f in b.events()
                        if f["type"] == "comment.created"
                    ]
                    said_to_v = [
                        f["data"]["comment"]["body"]
                        for f in v.events()
                        if f["type"] == "comment.created"
                    ]
                    assert said_to_b == ["public note", "internal note", "after the internal one"]
                    assert said_to_v == ["public note", "after the internal one"]
                    assert _seen(v) == await _streamed(db, task, internal=False)

                # Redis restarted mid-stream: events committed while it is away and after.
                await _rename(api1, admin, task, "before-restart")
                for ws in (a, b, c):
                    await ws.wait_for(_titled("before-restart"))
                redis.stop()
                await _rename(api1, admin, task, "during-outage-1")
                await _rename(api2, admin, task, "during-outage-2")
                redis.start()
                await _rename(api1, admin, task, "after-restart-1")
                # Both instances subscribed again, then their subscriptions cut: what the
                # engine publishes before they are back reaches them only through the gap
                # fill from the outbox.
                await _listeners_subscribed(redis, 2)
                _cut_subscriptions(redis)
                await _rename(api1, admin, task, "after-restart-2")
                for ws in (a, b, c):
                    await ws.wait_for(_titled("after-restart-2"))
                    await ws.settle()

                truth = await _streamed(db, task)
                assert _seen(a) == truth
                assert _seen(b) == truth
                assert _seen(c) == [e for e in truth if e[0] > last]
                kinds = [kind for _, kind in truth]
                assert {"sla.warning", "sla.critical", "sla.breach"} <= set(kinds)
