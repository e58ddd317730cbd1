"""The engines as an asyncio loop inside ``opsflow serve``: rounds until the app stops.

A round with backlog (some batch came back full) is followed at once; otherwise the loop
waits until the next known due instant, at most `interval` seconds (or until stopped), so
lateness does not depend on the interval. A commit that wrote outbox rows ends the wait
early (`events/wake.py`): in this process directly, from other processes through
PostgreSQL notifications; commits during a round start one more round after it, however
many they are, and such a round runs only the engines a commit can give work (`Cadence`).
A failing pass is logged and retried in the next round: its transaction
rolled back, so nothing was half-done.
"""

from __future__ import annotations

import asyncio
import contextlib

from opsflow.context import AppContext
from opsflow.workers.contract import EngineRegistry
from opsflow.workers.heartbeat import Heartbeat
from opsflow.workers.rounds import Cadence, Waker, run_round


class EmbeddedEngines:
    def __init__(self, ctx: AppContext, engines: EngineRegistry, *, interval: float) -> None:
        self.ctx = ctx
        self.engines = engines
        self.interval = interval
        self.heartbeat = Heartbeat(driver="serve", passes=engines.names, interval=interval)
        self.waker: Waker | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.waker = Waker(self.ctx, self.engines)
        self.waker.start()
        self._task = asyncio.create_task(self._loop(), name="opsflow-engines")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.waker is not None:
            await self.waker.stop()
        await self.heartbeat.stop(self.ctx)

    async def _loop(self) -> None:
        assert self.waker is not None
        cadence = Cadence(self.engines, self.interval, self.ctx.clock)
        while not self._stop.is_set():
            self.waker.round_starts()
            engines = cadence.next_round()
            done = await run_round(self.ctx, engines, heartbeat=self.heartbeat)
            wait = cadence.after(done)
            if wait is not None:
                cadence.waited(await self.waker.wait(self._stop, wait))
