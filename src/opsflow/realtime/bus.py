"""How a relayed event reaches the hubs: in process, or through Redis pub/sub.

Without Redis every frame goes to this process's hub, so the sockets of the process
whose relay published an event receive it. With Redis configured (the same
setting `/health` checks: the Celery broker URL, `REDIS_URL`), the relay's process
publishes each frame once on a Redis channel through one ordered publisher task, and every
API process listens on that channel and hands what arrives to its hub; a lost Redis
connection is re-established by the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from opsflow.observability.logging import get_logger
from opsflow.realtime.hub import HUB

log = get_logger("opsflow.realtime")
RECONNECT_SECONDS = 1.0
REFILL_PAGE = 1000


def channel_name(url: str) -> str:
    """Pub/sub channels ignore Redis database numbers; the channel carries it instead, so
    installations sharing one Redis under different databases stay apart."""
    database = url.rsplit("/", 1)[-1].split("?", 1)[0] if url.count("/") >= 3 else ""
    return f"opsflow:{database or '0'}:events"


class Bus:
    """Frames leave through one ordered task per event loop: handed to this process's hub
    (no Redis) or published on the Redis channel. Handing a burst (a relay pass commits up
    to hundreds of events at once) to the hub one frame per loop turn lets every
    connection's writer send between two frames, so a burst larger than a send queue does
    not evict clients that keep up.

    The queue is bounded (`limit`, OPSFLOW_WS_BUS_QUEUE). Past it a frame is not queued but
    its id remembered (the range of ids dropped, O(1) memory); before anything newer leaves,
    the task reads that range back from the outbox (every streamed event is there, by its
    stream id) and sends it, and drops the queued copies it already sent. Under overload
    the backlog lives in the database, not in this process, and no event is lost."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.sessions: async_sessionmaker[AsyncSession] | None = None
        self.limit = 10_000
        # Frames handed to the hub in one pass (a socket gets them in one write); kept
        # well under a send queue, so a queued connection that keeps up takes a batch.
        self.batch = 64
        self.dropped = 0  # frames not queued (then read back from the outbox)
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gap: tuple[int, int] | None = None  # ids dropped, first and last
        self._refilled_to: int | None = None  # queued frames up to this id were sent

    def configure(
        self,
        url: str | None,
        sessions: async_sessionmaker[AsyncSession] | None = None,
        *,
        limit: int = 10_000,
        batch: int = 64,
    ) -> None:
        self.url = url
        self.sessions = sessions
        self.limit = limit
        self.batch = batch
        self._sender = None
        self._queue = None

    def publish(self, frame: dict[str, Any]) -> None:
        """Called once the relay's transaction has committed; never waits."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        stale = self._sender is None or self._sender.done() or self._loop is not loop
        if queue is None or stale:
            self._loop = loop
            self._queue = queue = asyncio.Queue()
            self._gap = self._refilled_to = None
            loop_body = self._deliver_loop if self.url is None else self._publish_loop
            self._sender = asyncio.create_task(loop_body(queue))
        if queue.qsize() >= self.limit and self.sessions is not None:
            ident = int(frame["id"])
            gap = self._gap
            self._gap = (ident, ident) if gap is None else (min(gap[0], ident), max(gap[1], ident))
            self.dropped += 1
            return
        queue.put_nowait(frame)

    async def flushed(self) -> None:
        """Wait until every frame published so far has left (to the hub or to Redis)."""
        if self._queue is not None and self._sender is not None and not self._sender.done():
            await self._queue.join()

    async def _drain(
        self,
        queue: asyncio.Queue[dict[str, Any]],
        send: Callable[[list[dict[str, Any]]], Awaitable[None]],
    ) -> None:
        """Send what is queued, in order and in batches of at most `batch` (what arrived
        together leaves together), with what was dropped read back in its place."""
        while True:
            frames = [await queue.get()]
            while len(frames) < self.batch and not queue.empty():
                frames.append(queue.get_nowait())
            try:
                out: list[dict[str, Any]] = []
                for frame in frames:
                    ident = int(frame["id"])
                    if self._gap is not None and ident >= self._gap[0]:
                        if out:
                            await send(out)
                            out = []
                        await self._refill(send)
                    if self._refilled_to is None or ident > self._refilled_to:
                        out.append(frame)
                if out:
                    await send(out)
                if queue.empty():
                    if self._gap is not None:
                        await self._refill(send)
                    self._refilled_to = None  # nothing queued is that old any more
            finally:
                for _ in frames:
                    queue.task_done()

    async def _refill(self, send: Callable[[list[dict[str, Any]]], Awaitable[None]]) -> None:
        """Send the streamed events of the dropped range from the outbox, in order."""
        from opsflow.realtime.consumer import since  # the consumer imports this module

        while self._gap is not None and self.sessions is not None:
            first, last = self._gap
            self._gap = None
            after = first - 1
            while after < last:
                async with self.sessions() as session:
                    page = await since(session, after, REFILL_PAGE)
                wanted = [frame for frame in page if int(frame["id"]) <= last]
                for start in range(0, len(wanted), self.batch):
                    await send(wanted[start : start + self.batch])
                if wanted:
                    after = int(wanted[-1]["id"])
                if len(page) < REFILL_PAGE or len(wanted) < len(page):
                    break
            self._refilled_to = max(last, self._refilled_to or 0)
            log.warning("realtime_bus_refilled", first=first, last=last)

    async def _deliver_loop(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        async def to_hub(frames: list[dict[str, Any]]) -> None:
            HUB.publish_many(frames)
            await asyncio.sleep(0)  # the writers' turn

        await self._drain(queue, to_hub)

    async def _publish_loop(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        from redis.asyncio import Redis

        assert self.url is not None
        client = Redis.from_url(self.url)
        channel = channel_name(self.url)

        async def to_redis(frames: list[dict[str, Any]]) -> None:
            for frame in frames:
                text = json.dumps(frame)
                while True:
                    try:
                        await client.publish(channel, text)
                        break
                    except Exception as exc:  # Redis away: keep the order, try again
                        log.warning("realtime_publish_failed", error=str(exc))
                        await asyncio.sleep(RECONNECT_SECONDS)

        try:
            await self._drain(queue, to_redis)
        finally:
            await client.aclose()

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(BaseException):
                await self._sender
        self._sender = None
        self._queue = None


def _frames(message: dict[str, Any] | None) -> list[dict[str, Any]]:
    if message is None or message.get("type") != "message":
        return []
    return [json.loads(message["data"])]


class Listener:
    """An API process's subscription to the Redis channel, feeding its hub.

    It remembers the last stream id it handed over. Whatever it missed — while Redis was
    away, or because two relay processes published out of order — it reads from the
    outbox by that cursor (ids are gap-free in commit order), and it drops what it already
    handed over, so the hub gets every event once, in order.
    """

    def __init__(self, url: str, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.url = url
        self.sessions = sessions
        self.last: int | None = None
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _catch_up(self, before: int | None = None) -> None:
        """Hand over the outbox's streamed events after the cursor (and before `before`),
        in batches of at most the bus's batch size."""
        from opsflow.realtime.consumer import since  # the consumer imports this module

        if self.last is None:
            return
        while True:
            async with self.sessions() as session:
                frames = await since(session, self.last, REFILL_PAGE)
            page = len(frames)
            frames = [f for f in frames if before is None or int(f["id"]) < before]
            for start in range(0, len(frames), BUS.batch):
                await self._hand_over(frames[start : start + BUS.batch])
            if page < REFILL_PAGE or len(frames) < page:
                return

    async def _hand_over(self, frames: list[dict[str, Any]]) -> None:
        if frames:
            HUB.publish_many(frames)
            self.last = int(frames[-1]["id"])
            await asyncio.sleep(0)  # the writers' turn

    async def _receive(self, frames: list[dict[str, Any]]) -> None:
        """Hand what arrived together to the hub as one batch (as the bus does without
        Redis): in id order, without what was already handed over, and with any ids
        missing before a frame read from the outbox first."""
        out: list[dict[str, Any]] = []
        for frame in frames:
            ident = int(frame["id"])
            last = int(out[-1]["id"]) if out else self.last
            if last is not None and ident <= last:
                continue  # already handed over (read from the outbox)
            if last is not None and ident > last + 1:
                await self._hand_over(out)
                out = []
                await self._catch_up(before=ident)
                if self.last is not None and ident <= self.last:
                    continue
            out.append(frame)
        await self._hand_over(out)

    async def _start_cursor(self) -> None:
        from opsflow.realtime.consumer import last_id

        if self.last is None:
            async with self.sessions() as session:
                self.last = await last_id(session)

    async def _run(self) -> None:
        from redis.asyncio import Redis

        channel = channel_name(self.url)
        while True:
            client = Redis.from_url(self.url)
            try:
                await self._start_cursor()  # before subscribing: nothing falls in between
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(channel)
                    await self._catch_up()  # what was published while not subscribed
                    self.subscribed.set()
                    while True:  # what arrived together is handed over together
                        frames = _frames(await pubsub.get_message(timeout=None))
                        while len(frames) < BUS.batch:
                            more = await pubsub.get_message(timeout=0)
                            if more is None:
                                break
                            frames += _frames(more)
                        await self._receive(frames)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: subscribe again
                self.subscribed.clear()
                log.warning("realtime_listener_lost", error=str(exc))
                await asyncio.sleep(RECONNECT_SECONDS)
            finally:
                await client.aclose()

    async def stop(self) -> None:
        self.subscribed.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


BUS = Bus()
