"""How frames reach the sockets: the direct write under a real uvicorn server (and the ASGI
path under wsproto), a slow reader evicted by the direct writer, the bus bound with its
backlog read back from the outbox, the outbox pruner and the `resync` frame."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from opsflow.clock import SettableClock
from opsflow.composition import engine_registry
from opsflow.context import AppContext
from opsflow.models.outbox import OutboxEvent
from opsflow.realtime.bus import BUS, Listener
from opsflow.realtime.consumer import last_id, since
from opsflow.realtime.hub import HUB
from opsflow.realtime.transport import DirectWriter, encode_text
from tests.api.ws_support import GIVE_UP_SECONDS, connected, token_of
from tests.conftest import T0
from tests.factories import ADMIN_PASSWORD, login, make_task

STARTS = 50  # bounded polls for the in-process server to come up (a safety net)


@contextlib.asynccontextmanager
async def served(app: Any, implementation: str) -> AsyncIterator[str]:
    """The application behind a real uvicorn server in this event loop, on a free port;
    the WebSocket URL."""
    config = uvicorn.Config(
        app,
        ws=implementation,
        lifespan="off",
        log_level="warning",
        ws_per_message_deflate=False,
        ws_ping_interval=None,
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await server.startup(sockets=[sock])
    try:
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/api/v1/ws"
    finally:
        await server.shutdown(sockets=[sock])
        sock.close()


async def _relay(ctx: AppContext) -> None:
    await engine_registry(ctx.settings).get("relay").run(ctx, batch=500)
    await BUS.flushed()


async def _frames_until(ws: Any, kind: str) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["type"] != kind:
        frames.append(json.loads(await asyncio.wait_for(ws.recv(), GIVE_UP_SECONDS)))
    return frames


def test_a_text_frame_is_encoded_as_rfc_6455_says() -> None:
    from websockets.frames import Frame, Opcode

    for size in (0, 125, 126, 65535, 65536):
        payload = b"x" * size
        expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
        assert encode_text(payload) == expected


@pytest.mark.parametrize(
    ("implementation", "direct"), [("websockets-sansio", True), ("wsproto", False)]
)
async def test_live_events_reach_real_sockets_directly_or_through_asgi(
    app: Any,
    app_context: AppContext,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    implementation: str,
    direct: bool,
) -> None:
    task = await make_task(client, admin_headers, title="over a socket")
    sent_before = HUB.stats.sent
    async with served(app, implementation) as url, _socket(url, admin_headers) as ws:
        await ws.send(json.dumps({"action": "subscribe", "channels": [f"task:{task['id']}"]}))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        channel = f"task:{task['id']}"
        (subscriber,) = [s for s in HUB._subscribers if channel in s.channels]
        assert (subscriber.direct is not None) is direct
        await _relay(app_context)
        (created,) = await _frames_until(ws, "task.created")
    assert created["task"]["title"] == "over a socket"
    assert created["channels"] == [f"task:{task['id']}"]
    assert HUB.stats.sent >= sent_before + 1


def _socket(url: str, headers: dict[str, str], **options: Any) -> Any:
    """A real client socket with `auth.ok` read (an async context manager)."""
    from websockets.asyncio.client import connect

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[Any]:
        async with connect(f"{url}?token={token_of(headers)}", compression=None, **options) as ws:
            assert json.loads(await ws.recv())["type"] == "auth.ok"
            yield ws

    return opened()


async def _read_to_the_close(ws: Any) -> tuple[list[dict[str, Any]], int | None]:
    """Every frame until the server's close; the close code."""
    from websockets.exceptions import ConnectionClosed

    frames: list[dict[str, Any]] = []
    while True:
        try:
            text = await asyncio.wait_for(ws.recv(), GIVE_UP_SECONDS)
        except ConnectionClosed as closed:
            return frames, None if closed.rcvd is None else closed.rcvd.code
        frames.append(json.loads(text))


async def _flood(fast: Any, published: int, pad: str, done: Callable[[], bool]) -> int:
    """Publish large frames after number `published` until `done` (bounded: 2,000 frames, a
    safety net); the reader keeping up gets each one. The last number published."""
    while not done() and published < 2000:
        published += 1
        HUB.publish(_frame(published, pad))
        got = json.loads(await asyncio.wait_for(fast.recv(), GIVE_UP_SECONDS))
        assert got["id"] == published
    return published


@contextlib.asynccontextmanager
async def _slow_and_fast(app: Any, headers: dict[str, str]) -> AsyncIterator[tuple[Any, Any]]:
    """Two sockets on the tasks channel of a served app: one whose client reads a frame at
    a time when told to (the slow reader), one that reads everything."""
    async with (
        served(app, "websockets-sansio") as url,
        _socket(url, headers, max_queue=1) as slow,
        _socket(url, headers) as fast,
    ):
        for ws in (slow, fast):
            await ws.send(json.dumps({"action": "subscribe", "channels": ["tasks"]}))
            await ws.recv()  # subscribed
        yield slow, fast


async def test_a_reader_that_stops_is_evicted_1013_by_the_direct_writer(
    app: Any, app_context: AppContext, admin_headers: dict[str, str]
) -> None:
    app_context.settings.ws_write_buffer_bytes = 1024
    evicted_before = HUB.stats.evicted
    pad = "x" * 60_000
    async with _slow_and_fast(app, admin_headers) as (slow, fast):
        # A batch of events reaches each socket in one write, as separate frames, in order.
        HUB.publish_many([_frame(n, "batch") for n in (1, 2, 3)])
        for n in (1, 2, 3):
            assert json.loads(await asyncio.wait_for(fast.recv(), GIVE_UP_SECONDS))["id"] == n
        # Frames far larger than the bound, until the one that stopped reading (its kernel
        # buffers full, then its transport's) is evicted.
        published = await _flood(fast, 3, pad, lambda: HUB.stats.evicted != evicted_before)
        assert HUB.stats.evicted == evicted_before + 1
        # Now it reads: what was written before the eviction, in order, then the close.
        received, code = await _read_to_the_close(slow)
        HUB.publish(_frame(published + 1, "after"))  # the other one goes on
        assert json.loads(await fast.recv())["id"] == published + 1
    assert code == 1013
    ids = [f["id"] for f in received]
    assert ids == list(range(1, len(ids) + 1))  # a prefix, nothing skipped
    assert len(ids) < published


def _frame(ident: int, pad: str) -> dict[str, Any]:
    return {
        "id": ident,
        "type": "task.updated",
        "occurred_at": "2026-01-01T00:00:00Z",
        "task": {"id": "00000000-0000-0000-0000-000000000001", "title": "t"},
        "data": {"pad": pad},
    }


async def test_past_its_bound_the_bus_reads_the_backlog_back_from_the_outbox(
    app: Any,
    app_context: AppContext,
    clock: SettableClock,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    BUS.limit = 2
    dropped_before = BUS.dropped
    try:
        tasks = []
        for n in range(7):
            clock.set(T0 + timedelta(seconds=n))
            tasks.append(await make_task(client, admin_headers, title=f"burst {n}"))
        async with connected(app, admin_headers, ["tasks"]) as ws:
            await _relay(app_context)  # one pass publishes 7 frames into a bus that holds 2
            frames = await ws.drain()
    finally:
        BUS.limit = app_context.settings.ws_bus_queue
    assert BUS.dropped > dropped_before
    assert [f["task"]["title"] for f in frames] == [f"burst {n}" for n in range(7)]
    ids = [f["id"] for f in frames]
    assert ids == list(range(ids[0], ids[0] + 7))  # in order, each once


async def test_the_pruner_keeps_the_window_then_a_stale_since_is_told_to_resync(
    app: Any,
    app_context: AppContext,
    clock: SettableClock,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    for title in ("old 1", "old 2"):
        await make_task(client, admin_headers, title=title)
    await _relay(app_context)
    clock.set(T0 + timedelta(seconds=1))
    await make_task(client, admin_headers, title="unrelayed")  # not relayed before pruning
    async with app_context.sessions() as session:
        streamed = sorted(
            seq
            for seq in await session.scalars(
                select(OutboxEvent.stream_seq).where(OutboxEvent.stream_seq.is_not(None))
            )
            if seq is not None
        )
    first, newest = streamed[0], streamed[-1]
    assert newest > first

    clock.set(T0 + timedelta(hours=23))
    pruner = engine_registry(app_context.settings).get("outbox")
    assert (await pruner.run(app_context, batch=100)).counts == {"deleted": 0}  # in the window
    clock.set(T0 + timedelta(hours=25))
    pruner = engine_registry(app_context.settings).get("outbox")
    report = await pruner.run(app_context, batch=100)
    assert report.counts["deleted"] >= 1
    async with app_context.sessions() as session:
        kept = list(await session.scalars(select(OutboxEvent)))
    # The newest streamed event stays (numbering goes on from it), and every unrelayed one.
    assert [e.stream_seq for e in kept if e.stream_seq is not None] == [newest]
    assert {e.payload["task"]["title"] for e in kept if e.published_at is None} == {"unrelayed"}
    assert all(e.published_at is None or e.stream_seq == newest for e in kept)

    # A client resuming from before the oldest kept event is told to resync, then live.
    headers = await login(client, "admin", ADMIN_PASSWORD)  # the old token expired
    async with connected(app, headers, ["tasks"], since=first - 1) as ws:
        (resync,) = await ws.drain()
        assert resync["type"] == "resync"
        assert (resync["since"], resync["oldest_id"]) == (first - 1, newest)
        await _relay(app_context)  # the unrelayed task's event: live, numbered on
        (live,) = await ws.drain()
    assert live["task"]["title"] == "unrelayed"
    assert live["id"] == newest + 1
    # From the oldest kept event on, a resume replays as before.
    async with connected(app, headers, ["tasks"], since=newest) as ws:
        (replayed,) = await ws.drain()
    assert replayed["id"] == newest + 1


async def test_the_redis_listener_hands_what_arrived_together_over_as_one_batch(
    app: Any,
    app_context: AppContext,
    clock: SettableClock,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for n in range(5):
        clock.set(T0 + timedelta(seconds=n))
        await make_task(client, admin_headers, title=f"arrived {n}")
    await _relay(app_context)
    async with app_context.sessions() as session:
        first = await last_id(session) - 4
        frames = await since(session, first - 1, 5)
    assert [f["id"] for f in frames] == list(range(first, first + 5))
    batches: list[list[int]] = []
    monkeypatch.setattr(HUB, "publish_many", lambda fs: batches.append([f["id"] for f in fs]))
    listener = Listener("redis://unused/0", app_context.sessions)
    listener.last = first - 1
    f0, _f1, f2, f3, f4 = frames
    # Arrived together: a duplicate, a gap (read from the outbox), then a late copy.
    await listener._receive([f0, f0, f3, f4, f2])
    assert batches == [[first], [first + 1, first + 2], [first + 3, first + 4]]
    assert listener.last == first + 4


async def test_past_the_process_budget_the_heaviest_reader_is_dropped_the_others_go_on(
    app: Any, app_context: AppContext, admin_headers: dict[str, str]
) -> None:
    # Each socket may hold far more than the process may hold for all of them together.
    app_context.settings.ws_write_buffer_bytes = 64 * 1024 * 1024
    app_context.settings.ws_buffer_budget_bytes = 64 * 1024
    shed_before, evicted_before = HUB.stats.shed, HUB.stats.evicted
    pad = "x" * 60_000
    async with _slow_and_fast(app, admin_headers) as (slow, fast):
        # Until the one that stopped reading holds more than the budget (its kernel buffers
        # full first).
        published = await _flood(fast, 0, pad, lambda: HUB.stats.shed != shed_before)
        assert HUB.stats.shed == shed_before + 1
        assert HUB.stats.buffered <= 64 * 1024  # what it held was freed at once
        received, code = await _read_to_the_close(slow)
        HUB.publish(_frame(published + 1, "after"))
        assert json.loads(await fast.recv())["id"] == published + 1
        metrics = (await app_context.metrics.render()).decode()
    assert code is None  # dropped, not closed: its buffer is not waited for
    ids = [f["id"] for f in received]
    assert ids == list(range(1, len(ids) + 1))  # a prefix, nothing skipped
    assert len(ids) < published
    assert HUB.stats.evicted == evicted_before + 1
    assert "opsflow_ws_shed_total" in metrics
    assert "opsflow_ws_buffered_bytes" in metrics


async def test_connections_that_see_the_same_frames_share_them_each_gets_a_batch_in_one_write(
    app: Any,
    admin_headers: dict[str, str],
) -> None:
    writes: list[tuple[int, bytes]] = []

    def counting(direct: DirectWriter) -> None:
        """Count the writes to this connection's transport (every one goes through `send`)."""
        original = direct.send

        def send(wire: bytes) -> None:
            writes.append((id(direct), wire))
            original(wire)

        direct.send = send

    task_one = "00000000-0000-0000-0000-000000000001"
    other = {**_frame(0, "other"), "task": {"id": "00000000-0000-0000-0000-000000000002"}}
    async with (
        served(app, "websockets-sansio") as url,
        _socket(url, admin_headers) as a,
        _socket(url, admin_headers) as b,
        _socket(url, admin_headers) as c,
    ):
        for ws, channels in ((a, ["tasks"]), (b, ["tasks"]), (c, [f"task:{task_one}"])):
            await ws.send(json.dumps({"action": "subscribe", "channels": channels}))
            await ws.recv()  # subscribed
        groups = {s.group for s in HUB._subscribers}
        assert len(groups) == 2  # a and b share one, c has its own
        for subscriber in HUB._subscribers:
            assert subscriber.direct is not None
            counting(subscriber.direct)
        # Four events in one batch: c's channel carries the first, third and fourth only.
        writes.clear()
        HUB.publish_many([_frame(1, "p"), {**other, "id": 2}, _frame(3, "q"), _frame(4, "r")])
        first_writes = len(writes)
        got = [
            [json.loads(await ws.recv()) for _ in range(n)] for ws, n in ((a, 4), (b, 4), (c, 3))
        ]
        # Then c subscribes to every task too: from now on it gets what a and b get.
        await c.send(json.dumps({"action": "subscribe", "channels": ["tasks"]}))
        assert json.loads(await c.recv())["type"] == "subscribed"
        HUB.publish_many([_frame(5, "s"), {**other, "id": 6}])
        HUB.publish(_frame(7, "t"))
        later = [[json.loads(await ws.recv()) for _ in range(3)] for ws in (a, b, c)]
    assert first_writes == 3  # one write per connection for the whole batch
    assert [[f["id"] for f in frames] for frames in got] == [[1, 2, 3, 4], [1, 2, 3, 4], [1, 3, 4]]
    assert got[0][0]["channels"] == ["tasks"]
    assert got[2][0]["channels"] == [f"task:{task_one}"]
    assert [[f["id"] for f in frames] for frames in later] == [[5, 6, 7]] * 3  # each once
    assert later[2][0]["channels"] == [f"task:{task_one}", "tasks"]


async def test_a_live_event_waits_behind_a_frame_pending_for_the_writer_then_goes_direct(
    app: Any, admin_headers: dict[str, str]
) -> None:
    writes: list[bytes] = []
    async with served(app, "websockets-sansio") as url, _socket(url, admin_headers) as ws:
        await ws.send(json.dumps({"action": "subscribe", "channels": ["tasks"]}))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        (subscriber,) = HUB._subscribers
        direct = subscriber.direct
        assert direct is not None
        original = direct.send

        def send(wire: bytes) -> None:
            writes.append(wire)
            original(wire)

        direct.send = send
        # A frame that only the writer task can send (no direct path for it): queued,
        # pending until sent. A live event offered before the writer ran must not overtake it.
        subscriber.direct = None
        assert subscriber.offer({"type": "queued", "n": 1})
        subscriber.direct = direct
        assert subscriber.pending == 1
        HUB.publish(_frame(1, "behind"))
        assert subscriber.pending == 2  # queued behind it,
        assert not writes  # not written ahead
        first = [json.loads(await ws.recv()) for _ in range(2)]
        for _ in range(STARTS):  # the writer sent both: it counts them once it resumes
            if not subscriber.pending:
                break
            await asyncio.sleep(0)
        assert subscriber.pending == 0
        HUB.publish(_frame(2, "direct"))
        second = json.loads(await ws.recv())
    assert [f.get("id", f["type"]) for f in first] == ["queued", 1]
    assert second["id"] == 2
    assert len(writes) == 1  # once idle again, the event went straight to the transport


async def test_a_relay_pass_numbers_its_events_with_one_lock_and_one_read(
    app_context: AppContext,
    clock: SettableClock,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    from sqlalchemy import event

    for n in range(5):
        clock.set(T0 + timedelta(seconds=n))
        await make_task(client, admin_headers, title=f"numbered {n}")
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.lower())

    engine = app_context.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        await _relay(app_context)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    reads = [s for s in statements if "max(outbox_events.stream_seq)" in s]
    locks = [s for s in statements if "pg_advisory_xact_lock" in s]
    assert len(reads) == 1
    assert len(locks) == (1 if engine.dialect.name == "postgresql" else 0)
    async with app_context.read_sessions() as session:
        frames = await since(session, 0, 100)
    ids = [f["id"] for f in frames]
    assert ids == list(range(1, len(ids) + 1))  # gap-free, in order
    assert [f["task"]["title"] for f in frames if f["type"] == "task.created"] == [
        f"numbered {n}" for n in range(5)
    ]
