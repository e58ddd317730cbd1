"""The WebSocket stream: authentication, subscriptions, pushes of relayed outbox events,
visibility, bad frames, the per-user connection limit and slow-consumer eviction."""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from opsflow.clock import SettableClock
from opsflow.composition import engine_registry
from opsflow.config import Settings
from opsflow.context import AppContext
from opsflow.realtime.bus import BUS
from opsflow.realtime.hub import HUB
from opsflow.workers.rounds import run_round
from tests.api.ws_support import WS_PATH as WS
from tests.api.ws_support import Closed, Rejected, WsClient, connected, token_of
from tests.conftest import T0, make_settings
from tests.factories import (
    USER_PASSWORD,
    client_token,
    create_api_client,
    login,
    make_task,
    make_team,
    make_user,
)

INCIDENT = {
    "task_type": "INCIDENT",
    "priority": "CRITICAL",
    "start_sla_minutes": 15,
    "resolve_sla_minutes": 120,
}


async def _relay(ctx: AppContext) -> None:
    """One engine round, and its streamed events handed on by the bus."""
    await run_round(ctx, engine_registry(ctx.settings))
    await BUS.flushed()


async def test_query_token_subscribe_and_receive_task_events_in_order(
    app: Any,
    app_context: AppContext,
    clock: SettableClock,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    task = await make_task(client, admin_headers, **INCIDENT)
    async with connected(app, admin_headers) as ws:
        assert ws.hello_frame["role"] == "admin"
        assert await ws.subscribe([f"task:{task['id']}"]) == {
            "type": "subscribed",
            "channels": [f"task:{task['id']}"],
        }
        clock.set(T0 + timedelta(minutes=1))  # events of one instant have no order
        changed = await client.patch(
            f"/tasks/{task['id']}",
            json={"title": "renamed"},
            headers={**admin_headers, "If-Match": '"1"'},
        )
        assert changed.status_code == 200, changed.text
        await _relay(app_context)
        frames = await ws.drain()
    assert [f["type"] for f in frames] == ["task.created", "task.updated"]
    created, updated = frames
    assert set(updated) == {"id", "type", "occurred_at", "task", "data", "channels"}
    assert created["id"] != updated["id"]
    assert updated["task"]["title"] == "renamed"
    assert updated["task"]["id"] == task["id"]
    assert updated["channels"] == [f"task:{task['id']}"]
    occurred = datetime.fromisoformat(updated["occurred_at"].replace("Z", "+00:00"))
    assert occurred == T0 + timedelta(minutes=1)


async def test_first_frame_auth_alerts_channel_receives_sla_thresholds(
    app: Any,
    app_context: AppContext,
    clock: SettableClock,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    viewer = await make_user(client, admin_headers, "viewer")
    task = await make_task(client, admin_headers, **INCIDENT)
    await _relay(app_context)  # task.created goes out before anyone listens
    async with WsClient(app, "/api/v1/ws/alerts") as ws:
        await ws.send({"action": "auth", "token": token_of(viewer.headers)})
        await ws.hello()
        assert (await ws.subscribe(["alerts"]))["type"] == "subscribed"
        clock.set(T0 + timedelta(minutes=20))  # start SLA of 15 min: past its deadline
        await _relay(app_context)
        frames = await ws.drain()
    kinds = [f["type"] for f in frames]
    # Crossed in one pass, the three share their instant; the relay's order among them
    # is not the thresholds' order.
    assert {"sla.warning", "sla.critical", "sla.breach"} <= set(kinds), kinds
    assert all(f["task"]["id"] == task["id"] and f["channels"] == ["alerts"] for f in frames)
    assert not any(k.startswith("task.") for k in kinds)


async def test_tasks_channel_carries_every_readable_task_event(
    app: Any,
    app_context: AppContext,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    viewer = await make_user(client, admin_headers, "viewer")
    async with WsClient(app, WS) as ws:
        await ws.send({"action": "auth", "token": token_of(viewer.headers)})
        await ws.hello()
        assert (await ws.subscribe(["tasks"]))["type"] == "subscribed"
        task = await make_task(client, admin_headers, **INCIDENT)  # no team, no assignee
        await _relay(app_context)
        frames = await ws.drain()
    created = [f for f in frames if f["type"] == "task.created"]
    assert [f["task"]["id"] for f in created] == [task["id"]]
    assert created[0]["channels"] == ["tasks"]


async def test_bad_tokens_close_4401(app: Any, admin_headers: dict[str, str]) -> None:
    async with WsClient(app, WS, query="token=not-a-token") as ws:
        with pytest.raises(Closed) as bad:
            await ws.receive()
    assert bad.value.code == 4401
    async with WsClient(app, WS) as ws:
        await ws.send({"action": "subscribe", "channels": ["alerts"]})
        with pytest.raises(Closed) as not_auth:
            await ws.receive()
    assert not_auth.value.code == 4401
    assert "auth" in not_auth.value.reason


async def test_an_expired_token_closes_and_a_fresh_one_keeps_the_socket(
    app: Any, clock: SettableClock, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    async with connected(app, admin_headers) as ws:
        clock.set(T0 + timedelta(hours=23))
        fresh = await login(client, "admin", "Admin-Pass-123")
        await ws.send({"action": "auth", "token": token_of(fresh)})
        assert (await ws.receive())["type"] == "auth.ok"
        clock.set(T0 + timedelta(hours=25))  # the first token has expired, the fresh one not
        assert await ws.drain() == []
        clock.set(T0 + timedelta(hours=48))
        await ws.send({"action": "ping"})
        with pytest.raises(Closed) as closed:
            await ws.receive()
    assert closed.value.code == 4401


async def test_bad_frames_answer_error_frames_and_the_socket_stays_usable(
    app: Any, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    other = await make_user(client, admin_headers, "developer")
    async with connected(app, admin_headers) as ws:
        await ws.send_text("{not json")
        assert (await ws.receive())["code"] == "invalid_json"
        await ws.send({"action": "shout"})
        assert (await ws.receive())["code"] == "unknown_action"
        await ws.send_text('"' + "x" * (1024 * 1024) + '"')
        assert (await ws.receive())["code"] == "frame_too_large"
        await ws.send({"action": "subscribe", "channels": "alerts"})
        assert (await ws.receive())["code"] == "invalid_channels"
        refused = await ws.subscribe([f"user:{other.id}", "bogus", "alerts"])
        assert refused["code"] == "forbidden_channel"
        assert set(refused["channels"]) == {f"user:{other.id}", "bogus"}
        assert (await ws.subscribe(["alerts", "user:me"]))["channels"] == ["alerts", "user:me"]
        await ws.send({"action": "unsubscribe", "channels": ["alerts"]})
        assert (await ws.receive())["channels"] == ["user:me"]
    health = await client.get("/health")
    assert health.status_code == 200


async def test_a_sixth_connection_is_refused_with_a_reason(
    app: Any, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    user = await make_user(client, admin_headers, "support")
    async with contextlib.AsyncExitStack() as five:
        for _ in range(5):
            await five.enter_async_context(connected(app, user.headers))
        with pytest.raises(Closed) as refused:
            async with connected(app, user.headers):
                pass
        assert refused.value.code == 4429
        assert "5 connections" in refused.value.reason
    again = await login(client, user.username, USER_PASSWORD)
    async with connected(app, again) as ws:  # the slots are free again
        assert ws.hello_frame["type"] == "auth.ok"


async def test_a_slow_consumer_is_closed_1013_and_others_still_receive(
    app: Any, app_context: AppContext, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    app_context.settings.ws_send_queue = 8
    evicted_before = HUB.stats.evicted
    async with (
        connected(app, admin_headers, ["user:me"], slow=True) as slow,
        connected(app, admin_headers, ["user:me"]) as fast,
    ):
        for _ in range(4):  # 12 events in bursts of 3: the fast client keeps up
            for _ in range(3):
                await make_task(client, admin_headers, assigned_to=admin_id(admin_headers, app))
            await _relay(app_context)
            frames = await fast.drain()
            assert [f["type"] for f in frames] == ["task.created"] * 3
        closed = await _until_closed(slow)
    assert closed.code == 1013
    assert HUB.stats.evicted == evicted_before + 1
    exposed = (await client.get("http://testserver/metrics", headers=admin_headers)).text
    assert f"opsflow_ws_evictions_total {float(HUB.stats.evicted)}" in exposed
    assert "opsflow_ws_connections_open " in exposed
    assert "opsflow_ws_messages_sent_total " in exposed
    # Every live event frame written to the fast client was timed from its commit.
    delivered = [
        line
        for line in exposed.splitlines()
        if line.startswith("opsflow_ws_delivery_latency_seconds_count")
    ]
    assert delivered
    assert float(delivered[0].split()[-1]) >= 12


async def _until_closed(ws: WsClient) -> Closed:
    while True:
        try:
            await ws.receive()
        except Closed as closed:
            return closed


def admin_id(headers: dict[str, str], app: Any) -> str:
    claims = app.state.context.tokens.decode_access(token_of(headers), now=T0)
    return str(claims.subject)


async def test_an_unknown_websocket_path_is_still_404(app: Any) -> None:
    with pytest.raises(Rejected) as rejected:
        async with WsClient(app, "/api/v1/wsx"):
            pass
    assert rejected.value.status == 404


REDIS_URL = os.environ.get("OPSFLOW_TEST_REDIS_URL")


@pytest.fixture
def settings(request: pytest.FixtureRequest, database_url: str) -> Settings:
    """With `@pytest.mark.redis_fanout`, an installation configured with Redis."""
    if request.node.get_closest_marker("redis_fanout") is None:
        return make_settings(database_url)
    if not REDIS_URL:
        pytest.skip("needs Redis: set OPSFLOW_TEST_REDIS_URL")
    return make_settings(database_url, celery_broker_url=REDIS_URL)


@pytest.mark.redis_fanout
async def test_with_redis_events_travel_through_pub_sub_once_and_in_order(
    app: Any,
    app_context: AppContext,
    clock: SettableClock,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    listener = app.state.realtime_listener
    assert listener is not None
    await asyncio.wait_for(listener.subscribed.wait(), 10)
    published: list[dict[str, Any]] = []
    HUB.listeners.append(published.append)
    try:
        task = await make_task(client, admin_headers, **INCIDENT)
        async with connected(app, admin_headers, [f"task:{task['id']}"]) as ws:
            clock.set(T0 + timedelta(minutes=1))  # events of one instant have no order
            changed = await client.patch(
                f"/tasks/{task['id']}",
                json={"title": "through redis"},
                headers={**admin_headers, "If-Match": '"1"'},
            )
            assert changed.status_code == 200, changed.text
            await _relay(app_context)
            frames = await ws.receive_until("task.updated")
    finally:
        HUB.listeners.remove(published.append)
    assert [f["type"] for f in frames] == ["task.created", "task.updated"]
    # The hub got them from the Redis listener, each once (the relay's process did not
    # also hand them over directly).
    mine = [f["type"] for f in published if f["task"]["id"] == task["id"]]
    assert mine == ["task.created", "task.updated"]


async def _rename(
    client: httpx.AsyncClient, headers: dict[str, str], task: dict[str, Any], version: int
) -> None:
    response = await client.patch(
        f"/tasks/{task['id']}",
        json={"title": f"v{version + 1}"},
        headers={**headers, "If-Match": f'"{version}"'},
    )
    assert response.status_code == 200, response.text


async def test_a_reconnect_with_since_replays_exactly_the_missed_events_then_goes_live(
    app: Any,
    app_context: AppContext,
    clock: SettableClock,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    task = await make_task(client, admin_headers, **INCIDENT)
    channel = [f"task:{task['id']}"]
    async with connected(app, admin_headers, channel) as ws:
        await _relay(app_context)
        (created,) = await ws.drain()
    for version in (1, 2, 3):  # missed while disconnected
        clock.set(T0 + timedelta(minutes=version))
        await _rename(client, admin_headers, task, version)
    await _relay(app_context)
    async with connected(app, admin_headers, channel, since=created["id"]) as ws:
        missed = await ws.drain()
        clock.set(T0 + timedelta(minutes=4))
        await _rename(client, admin_headers, task, 4)
        await _relay(app_context)
        live = await ws.drain()
        await ws.send({"action": "subscribe", "channels": channel, "since": "x"})
        assert (await ws.receive())["code"] == "invalid_since"
    assert [f["task"]["title"] for f in missed] == ["v2", "v3", "v4"]
    assert [f["id"] for f in missed] == [created["id"] + 1, created["id"] + 2, created["id"] + 3]
    assert [(f["type"], f["id"]) for f in live] == [("task.updated", created["id"] + 4)]


@pytest.mark.redis_fanout
async def test_after_losing_redis_the_listener_fills_the_gap_from_the_outbox(
    app: Any,
    app_context: AppContext,
    clock: SettableClock,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    listener = app.state.realtime_listener
    await asyncio.wait_for(listener.subscribed.wait(), 10)
    task = await make_task(client, admin_headers, **INCIDENT)
    async with connected(app, admin_headers, [f"task:{task['id']}"]) as ws:
        await _relay(app_context)
        await ws.receive_until("task.created")
        await listener.stop()  # the process loses its Redis subscription
        for version in (1, 2, 3):  # published to Redis while nobody of ours listens
            clock.set(T0 + timedelta(minutes=version))
            await _rename(client, admin_headers, task, version)
            await _relay(app_context)
        listener.start()  # subscribed again: the gap comes from the outbox
        await asyncio.wait_for(listener.subscribed.wait(), 10)
        clock.set(T0 + timedelta(minutes=4))
        await _rename(client, admin_headers, task, 4)
        await _relay(app_context)
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["task"]["title"] != "v5":
            frames.append(await ws.receive())
    assert [f["task"]["title"] for f in frames] == ["v2", "v3", "v4", "v5"]
    ids = [f["id"] for f in frames]
    assert ids == sorted(set(ids))


async def _comment(
    client: httpx.AsyncClient, headers: dict[str, str], task: str, body: str, **extra: Any
) -> None:
    response = await client.post(
        f"/tasks/{task}/comments", json={"body": body, **extra}, headers=headers
    )
    assert response.status_code == 201, response.text


async def test_comments_reach_task_subscribers_and_internal_ones_never_a_viewer(
    app: Any,
    app_context: AppContext,
    clock: SettableClock,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    team = await make_team(client, admin_headers)
    viewer = await make_user(client, admin_headers, "viewer")
    task = await make_task(client, admin_headers, team_id=team)
    await _relay(app_context)
    channel = [f"task:{task['id']}"]
    async with (
        connected(app, admin_headers, channel) as admin,
        connected(app, viewer.headers, [f"team:{team}"]) as watcher,
    ):
        clock.set(T0 + timedelta(minutes=1))
        await _comment(client, admin_headers, task["id"], "visible to all")
        clock.set(T0 + timedelta(minutes=2))
        await _comment(client, admin_headers, task["id"], "ours only", internal=True)
        await _relay(app_context)
        seen_by_admin = await admin.drain()
        seen_by_viewer = await watcher.drain()
        # Replayed, the internal one stays hidden from the viewer too.
        assert (await watcher.subscribe(channel, since=0))["type"] == "subscribed"
        replayed = [f for f in await watcher.drain() if f["type"].startswith("comment.")]
    assert [(f["type"], f["data"]["comment"]["body"]) for f in seen_by_admin] == [
        ("comment.created", "visible to all"),
        ("comment.created", "ours only"),
    ]
    internal = seen_by_admin[1]
    assert internal["data"]["internal"] is True
    assert internal["task"]["id"] == task["id"]
    assert "notify" not in internal["data"]
    assert [f["data"]["comment"]["body"] for f in seen_by_viewer] == ["visible to all"]
    assert seen_by_viewer[0]["channels"] == [f"team:{team}"]
    assert [f["data"]["comment"]["body"] for f in replayed] == ["visible to all"]


async def test_inbox_read_goes_only_to_the_readers_own_channel(
    app: Any,
    app_context: AppContext,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    other = await make_user(client, admin_headers, "manager")
    task = await make_task(client, admin_headers)
    await _relay(app_context)
    async with (
        connected(app, admin_headers, ["user:me"]) as mine,
        connected(app, admin_headers, [f"task:{task['id']}", "alerts"]) as task_only,
        connected(app, other.headers, ["user:me", f"task:{task['id']}"]) as theirs,
    ):
        read = await client.post(f"/tasks/{task['id']}/read", headers=admin_headers)
        assert read.status_code == 200, read.text
        await _relay(app_context)
        to_me = await mine.drain()
        to_task = await task_only.drain()
        to_other = await theirs.drain()
    assert [f["type"] for f in to_me] == ["inbox.read"]
    assert to_me[0]["data"]["task_id"] == task["id"]
    assert to_me[0]["channels"] == [f"user:{admin_id(admin_headers, app)}"]
    assert to_task == []
    assert to_other == []


async def test_api_clients_internal_comments_with_a_tasks_scope_and_no_socket_without(
    app: Any,
    app_context: AppContext,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    reader = await create_api_client(client, admin_headers, ["tasks:read"])
    reporter = await create_api_client(client, admin_headers, ["reports:read"])
    scoped = {
        "Authorization": f"Bearer {(await client_token(client, reader)).json()['access_token']}"
    }
    unscoped = (await client_token(client, reporter)).json()["access_token"]
    task = await make_task(client, admin_headers)
    await _relay(app_context)
    async with WsClient(app, WS, query=f"token={unscoped}") as ws:
        with pytest.raises(Closed) as refused:
            await ws.receive()
    assert refused.value.code == 4401
    async with connected(app, scoped, [f"task:{task['id']}"]) as robot:
        await _comment(client, admin_headers, task["id"], "for the team", internal=True)
        await _relay(app_context)
        frames = await robot.drain()
    assert [(f["type"], f["data"]["internal"]) for f in frames] == [("comment.created", True)]


async def test_one_heartbeat_sweep_pings_every_connection_and_closes_expired_quiet_ones(
    app: Any, clock: SettableClock, admin_headers: dict[str, str]
) -> None:
    async with connected(app, admin_headers) as first, connected(app, admin_headers) as second:
        HUB.ping_all()
        assert await first.drain() == [{"type": "ping"}]
        assert await second.drain() == [{"type": "ping"}]
        clock.set(T0 + timedelta(hours=48))  # both tokens expired; neither socket sends
        HUB.ping_all()
        for ws in (first, second):
            with pytest.raises(Closed) as closed:
                await ws.receive()
            assert closed.value.code == 4401
