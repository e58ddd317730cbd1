"""How a relayed event reaches the hubs: in process, or through Redis pub/sub.

Without Redis every frame goes straight to this process's hub, so the sockets of the
process whose relay published an event receive it. With Redis configured (the same
setting `/health` checks: the Celery broker URL, `REDIS_URL`), the relay's process
publishes each frame once on a Redis channel through one ordered publisher task, and every
API process listens on that channel and hands what arrives to its hub; a lost Redis
connection is re-established by the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from opsflow.observability.logging import get_logger
from opsflow.realtime.hub import HUB

log = get_logger("opsflow.realtime")
RECONNECT_SECONDS = 1.0


def channel_name(url: str) -> str:
    """Pub/sub channels ignore Redis database numbers; the channel carries it instead, so
    installations sharing one Redis under different databases stay apart."""
    database = url.rsplit("/", 1)[-1].split("?", 1)[0] if url.count("/") >= 3 else ""
    return f"opsflow:{database or '0'}:events"


class Bus:
    def __init__(self) -> None:
        self.url: str | None = None
        self._queue: asyncio.Queue[str] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def configure(self, url: str | None) -> None:
        self.url = url
        self._publisher = None
        self._queue = None

    def publish(self, frame: dict[str, Any]) -> None:
        """Called once the relay's transaction has committed; never waits."""
        if self.url is None:
            HUB.publish(frame)
            return
        loop = asyncio.get_running_loop()
        queue = self._queue
        stale = self._publisher is None or self._publisher.done() or self._loop is not loop
        if queue is None or stale:
            self._loop = loop
            self._queue = queue = asyncio.Queue()
            self._publisher = asyncio.create_task(self._publish_loop(self.url, queue))
        queue.put_nowait(json.dumps(frame))

    async def _publish_loop(self, url: str, queue: asyncio.Queue[str]) -> None:
        from redis.asyncio import Redis

        client = Redis.from_url(url)
        channel = channel_name(url)
        try:
            while True:
                text = await queue.get()
                while True:
                    try:
                        await client.publish(channel, text)
                        break
                    except Exception as exc:  # Redis away: keep the order, try again
                        log.warning("realtime_publish_failed", error=str(exc))
                        await asyncio.sleep(RECONNECT_SECONDS)
        finally:
            await client.aclose()

    async def close(self) -> None:
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(BaseException):
                await self._publisher
        self._publisher = None
        self._queue = None


class Listener:
    """An API process's subscription to the Redis channel, feeding its hub."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        from redis.asyncio import Redis

        channel = channel_name(self.url)
        while True:
            client = Redis.from_url(self.url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(channel)
                    self.subscribed.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            HUB.publish(json.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: subscribe again
                self.subscribed.clear()
                log.warning("realtime_listener_lost", error=str(exc))
                await asyncio.sleep(RECONNECT_SECONDS)
            finally:
                await client.aclose()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


BUS = Bus()
