"""The relay runs right after a commit that wrote outbox events, not at its next poll.

In process (SQLite and PostgreSQL): a unit of work that wrote events wakes the engine loop
once it has committed (never when it rolls back, nor for a savepoint that rolled back its
events); many commits during a round start one more round, not one each. On PostgreSQL
the transaction also notifies the outbox channel once (nothing with
OPSFLOW_OUTBOX_NOTIFY=false), and the listening connection of a loop comes back by itself
after it was cut. Every loop here waits an hour between polls,
so only a wake can start a round.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select, text

from opsflow.composition import build_context, relay_consumers
from opsflow.context import AppContext
from opsflow.db import savepoint, unit_of_work
from opsflow.events import outbox, wake
from opsflow.events.relay import RelayEngine
from opsflow.models.outbox import OutboxEvent
from opsflow.workers.contract import EngineRegistry, PassReport
from opsflow.workers.embedded import EmbeddedEngines
from tests.conftest import make_settings
from tests.factories import make_task

HOUR = 3600.0
GIVE_UP_SECONDS = 30  # a safety net against a hung test, not a timing assertion


class Gate:
    """An engine that holds its round until the test lets it go: a round in progress."""

    name = "gate"
    batch = 1
    on_commit = True

    def __init__(self) -> None:
        self.entered = 0
        self._changed = asyncio.Event()
        self._open = asyncio.Event()

    async def run(self, ctx: AppContext, *, batch: int) -> PassReport:
        self.entered += 1
        self._changed.set()
        await self._open.wait()
        self._open.clear()  # one pass per release
        return PassReport(self.name)

    def release(self) -> None:
        self._open.set()

    async def reached(self, rounds: int) -> None:
        async with asyncio.timeout(GIVE_UP_SECONDS):
            while self.entered < rounds:
                self._changed.clear()
                await self._changed.wait()


class Timed:
    """An engine with nothing to do for a commit (like the SLA engine): counts its passes."""

    name = "timed"
    batch = 1
    on_commit = False

    def __init__(self) -> None:
        self.passes = 0

    async def run(self, ctx: AppContext, *, batch: int) -> PassReport:
        self.passes += 1
        return PassReport(self.name)


class Ticker:
    """An engine a commit wakes that only counts its passes: a round went by."""

    name = "ticker"
    batch = 1
    on_commit = True

    def __init__(self) -> None:
        self.passes = 0
        self._ran = asyncio.Event()

    async def run(self, ctx: AppContext, *, batch: int) -> PassReport:
        self.passes += 1
        self._ran.set()
        return PassReport(self.name)

    async def beyond(self, passes: int) -> None:
        while self.passes <= passes:
            self._ran.clear()
            await self._ran.wait()


@pytest.fixture
async def watched() -> AsyncIterator[wake.Wakeup]:
    wakeup = wake.watch()
    yield wakeup
    wake.unwatch(wakeup)


def _event(session: Any, now: datetime) -> None:
    outbox.emit(
        session,
        aggregate_type="task",
        aggregate_id=uuid.uuid4(),
        event_type="task.updated",
        payload={},
        now=now,
    )


async def _rolled_back(ctx: AppContext, now: datetime) -> None:
    async with unit_of_work(ctx.sessions) as session:
        _event(session, now)
        raise RuntimeError("rolled back")


async def _in_failed_savepoint(session: Any, now: datetime) -> None:
    async with savepoint(session):
        _event(session, now)
        raise RuntimeError("its events go with it")


async def test_a_commit_that_wrote_events_wakes_the_loop_and_a_rollback_does_not(
    app_context: AppContext, watched: wake.Wakeup
) -> None:
    now = app_context.clock.now()
    with pytest.raises(RuntimeError):
        await _rolled_back(app_context, now)
    assert not watched.pending

    async with unit_of_work(app_context.sessions) as session:
        with pytest.raises(RuntimeError):
            await _in_failed_savepoint(session, now)
    assert not watched.pending  # it committed, but no event

    async with unit_of_work(app_context.sessions) as session:
        _event(session, now)
        _event(session, now)
        assert not watched.pending  # not before the commit
    assert watched.pending


async def test_a_burst_of_commits_during_a_round_starts_one_more_round(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_context: AppContext
) -> None:
    gate = Gate()
    engines = EmbeddedEngines(
        app_context, EngineRegistry([gate, RelayEngine(relay_consumers())]), interval=HOUR
    )
    relays = app_context.metrics.engine_passes.labels("relay", "ok")
    relays_before = relays._value.get()
    wakeups_before = app_context.metrics.engine_wakeups._value.get()
    engines.start()
    try:
        await gate.reached(1)  # the first round, held before its relay pass
        assert engines.waker is not None
        if engines.waker.listener is not None:  # on PostgreSQL: once it listens, it woke
            await asyncio.wait_for(engines.waker.listener.connected.wait(), GIVE_UP_SECONDS)
        titles = [f"burst {n}" for n in range(20)]
        for title in titles:
            await make_task(client, admin_headers, title=title)
        gate.release()  # its relay pass takes the whole burst
        await gate.reached(2)  # the next round, started by the burst's commits at once
        assert relays._value.get() - relays_before == 1
        async with app_context.sessions() as session:
            left = await session.scalar(
                select(func.count()).where(OutboxEvent.published_at.is_(None))
            )
        assert left == 0
        assert app_context.metrics.engine_wakeups._value.get() - wakeups_before == 1
        assert engines.waker.wakeup is not None
        assert not engines.waker.wakeup.pending  # twenty commits, one round: nothing more
    finally:
        gate.release()
        await engines.stop()


async def test_a_round_a_commit_starts_runs_only_the_engines_a_commit_gives_work(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_context: AppContext
) -> None:
    timed, ticker = Timed(), Ticker()
    engines = EmbeddedEngines(
        app_context,
        EngineRegistry([timed, RelayEngine(relay_consumers()), ticker]),
        interval=HOUR,
    )
    relays = app_context.metrics.engine_passes.labels("relay", "ok")
    relays_before = relays._value.get()
    engines.start()
    try:
        async with asyncio.timeout(GIVE_UP_SECONDS):
            await ticker.beyond(0)  # the first round, every engine
            assert engines.waker is not None
            if engines.waker.listener is not None:
                await engines.waker.listener.connected.wait()
            task = await make_task(client, admin_headers, title="woken")
            # The rounds its commit starts (an hour before the next full one) publish it.
            while True:
                seen = ticker.passes
                if await _published(app_context, uuid.UUID(task["id"])):
                    break
                await ticker.beyond(seen)
        assert relays._value.get() - relays_before >= 2
        assert timed.passes == 1  # nothing of its was due: it keeps its time
    finally:
        await engines.stop()


async def _published(ctx: AppContext, task_id: uuid.UUID) -> bool:
    async with ctx.sessions() as session:
        left = await session.scalar(
            select(func.count()).where(
                OutboxEvent.aggregate_id == task_id, OutboxEvent.published_at.is_(None)
            )
        )
    return left == 0


@pytest.mark.postgres
async def test_one_notification_per_transaction_and_only_if_it_commits(
    app_context: AppContext, database_url: str
) -> None:
    import asyncpg

    args, params = app_context.engine.dialect.create_connect_args(app_context.engine.url)
    listening = await asyncpg.connect(*args, **params)
    heard: list[str] = []
    marker = asyncio.Event()

    def note(_c: Any, _pid: int, _channel: str, payload: str) -> None:
        heard.append(payload)
        if payload == "marker":
            marker.set()

    try:
        await listening.add_listener(wake.CHANNEL, note)
        now = app_context.clock.now()
        with pytest.raises(RuntimeError):
            await _rolled_back(app_context, now)
        async with unit_of_work(app_context.sessions) as session:
            for _ in range(3):
                _event(session, now)
        async with app_context.engine.begin() as connection:
            await connection.execute(text("SELECT pg_notify(:c, 'marker')"), {"c": wake.CHANNEL})
        await asyncio.wait_for(marker.wait(), GIVE_UP_SECONDS)
        # Notifications arrive in commit order: the marker's came last.
        assert heard == [wake.process_token(), "marker"]

        # The notification comes from the outbox table's trigger, not from a statement of
        # the unit of work: a unit of work that writes events sends no pg_notify itself.
        sent: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            sent.append(statement)

        event.listen(app_context.engine.sync_engine, "before_cursor_execute", record)
        try:
            async with unit_of_work(app_context.sessions) as session:
                _event(session, now)
        finally:
            event.remove(app_context.engine.sync_engine, "before_cursor_execute", record)
        assert sent
        assert not [s for s in sent if "notify" in s.lower()]
        marker.clear()
        async with app_context.engine.begin() as connection:
            await connection.execute(text("SELECT pg_notify(:c, 'marker')"), {"c": wake.CHANNEL})
        await asyncio.wait_for(marker.wait(), GIVE_UP_SECONDS)
        assert heard == [wake.process_token(), "marker", wake.process_token(), "marker"]

        # Turned off (OPSFLOW_OUTBOX_NOTIFY=false): the process's connections carry no
        # token, and its committed events notify nothing.
        marker.clear()
        other = build_context(make_settings(database_url, outbox_notify=False), app_context.clock)
        try:
            async with unit_of_work(other.sessions) as session:
                _event(session, now)
        finally:
            await other.close()
        async with app_context.engine.begin() as connection:
            await connection.execute(text("SELECT pg_notify(:c, 'marker')"), {"c": wake.CHANNEL})
        await asyncio.wait_for(marker.wait(), GIVE_UP_SECONDS)
        assert heard == [wake.process_token(), "marker", wake.process_token(), "marker", "marker"]
    finally:
        wake.configure(notify=True)
        await listening.close()


@pytest.mark.postgres
async def test_the_listener_comes_back_after_its_connection_is_cut(
    app_context: AppContext, watched: wake.Wakeup
) -> None:
    listener = wake.NotificationListener(app_context.engine, watched)
    listener.start()
    try:
        await asyncio.wait_for(listener.connected.wait(), GIVE_UP_SECONDS)
        assert watched.pending  # woken once on connecting: for what came before
        watched.clear()
        async with app_context.engine.connect() as connection:
            cut = await connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name AND datname = current_database()"
                ),
                {"name": wake.APPLICATION_NAME},
            )
        assert cut == 1
        # Reconnected, it wakes the loop for what may have been committed meanwhile.
        assert await watched.wait(asyncio.Event(), GIVE_UP_SECONDS)
        assert listener.connections == 2
        watched.clear()
        async with app_context.engine.begin() as connection:  # another process's commit
            await connection.execute(text("SELECT pg_notify(:c, 'elsewhere')"), {"c": wake.CHANNEL})
        assert await watched.wait(asyncio.Event(), GIVE_UP_SECONDS)
    finally:
        await listener.stop()
