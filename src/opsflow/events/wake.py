"""Waking the engine loops as soon as a commit wrote outbox rows, instead of at their poll.

The relay used to find new events only at the next round of its driver, up to one engine
interval after the commit. Now a unit of work that wrote outbox rows (see
`events/outbox.py`) also says so:

* in its own process: once it has committed, every engine loop of the process that waits
  (the one inside ``opsflow serve``, ``opsflow engine``) is woken through its
  :class:`Wakeup`;
* to other processes, on PostgreSQL: the transaction notifies the ``opsflow_outbox``
  channel (PostgreSQL delivers it when, and only if, the transaction commits), with this
  process's token as the payload; a loop that runs the relay keeps a dedicated connection
  listening on that channel (:class:`NotificationListener`) and is woken by what other
  processes committed. The notification is sent by a statement trigger on the outbox table
  (migration 0026), not by a statement of ours: each connection OpsFlow opens carries the
  token as its ``opsflow.wake_token`` setting (:func:`connection_settings`), so a write pays
  no round trip for it.

A :class:`Wakeup` coalesces: however many commits come while a round runs, they start one
more round after it, never one per commit. Nothing depends on a wake arriving: the loops
still poll every engine interval, so a lost notification (the listener reconnecting after
a connection loss, or ``OPSFLOW_OUTBOX_NOTIFY=false``) only delays an event to that poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from opsflow.observability.logging import get_logger

CHANNEL = "opsflow_outbox"
APPLICATION_NAME = "opsflow-outbox-listener"
RECONNECT_SECONDS = (0.5, 30.0)  # first and longest wait before the listener reconnects
KEEPALIVE_SECONDS = 60.0  # how often an idle listening connection is checked
log = get_logger("opsflow.wake")


class _Settings:
    notify = True  # OPSFLOW_OUTBOX_NOTIFY: NOTIFY on commit and LISTEN in the engine loops


SETTINGS = _Settings()


def configure(*, notify: bool) -> None:
    SETTINGS.notify = notify


_token: tuple[int, str] | None = None


def process_token() -> str:
    """This process's identity in a notification's payload (made again after a fork), so
    a listener can skip what its own process committed: that woke it in process already."""
    global _token
    if _token is None or _token[0] != os.getpid():
        _token = (os.getpid(), f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    return _token[1]


TOKEN_SETTING = "opsflow.wake_token"  # read by the outbox table's trigger (migration 0026)


def connection_settings() -> dict[str, str]:
    """Server settings for a new PostgreSQL connection of this process: the token its
    outbox inserts notify with, or none when notifying is turned off. Asked when the
    connection is opened, so a forked process gives its own token."""
    return {TOKEN_SETTING: process_token()} if SETTINGS.notify else {}


class Wakeup:
    """A coalescing wake-up signal for one engine loop (made inside its event loop)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self.pending = False  # set since the last `clear`

    def set(self) -> None:
        """Wake the loop (from its own event loop or any other thread)."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._set()
        elif not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed in between
                self._loop.call_soon_threadsafe(self._set)

    def _set(self) -> None:
        self.pending = True
        self._event.set()

    def clear(self) -> None:
        """Called when a round starts: what committed before it is that round's work."""
        self.pending = False
        self._event.clear()

    async def wait(self, stop: asyncio.Event, seconds: float) -> bool:
        """Until woken, `stop` is set or `seconds` passed; True when woken."""
        if self.pending:
            return True
        if stop.is_set():
            return False
        woken = asyncio.ensure_future(self._event.wait())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((woken, stopped), timeout=seconds, return_when="FIRST_COMPLETED")
        finally:
            woken.cancel()
            stopped.cancel()
        return self.pending and not stop.is_set()


_WAITING: set[Wakeup] = set()


def watch() -> Wakeup:
    """A wake-up signal for the calling engine loop, set by every commit of this process
    that wrote outbox rows (until :func:`unwatch`)."""
    wakeup = Wakeup()
    _WAITING.add(wakeup)
    return wakeup


def unwatch(wakeup: Wakeup) -> None:
    _WAITING.discard(wakeup)


def committed() -> None:
    """A unit of work of this process committed outbox rows: wake this process's loops."""
    for wakeup in tuple(_WAITING):
        wakeup.set()


def notifies(dialect: str) -> bool:
    """Whether commits on this database notify other processes (and loops listen)."""
    return SETTINGS.notify and dialect == "postgresql"


class NotificationListener:
    """A dedicated asyncpg connection that LISTENs on the outbox channel and sets
    `wakeup` for every notification another process sent. A lost connection is opened
    again by itself (waiting longer after each failure, up to 30 s); meanwhile the loop
    polls at its interval. After every (re)connection the loop is woken once, for what was
    committed while nobody listened."""

    def __init__(self, engine: AsyncEngine, wakeup: Wakeup) -> None:
        self.engine = engine
        self.wakeup = wakeup
        self.connected = asyncio.Event()  # set while listening (tests wait on it)
        self.connections = 0  # how many times it (re)connected
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="opsflow-outbox-listener")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload != process_token():
            self.wakeup.set()

    async def _connect(self) -> Any:
        import asyncpg

        args, params = self.engine.dialect.create_connect_args(self.engine.url)
        params = {k: v for k, v in params.items() if not k.startswith("prepared_statement")}
        # Named, so an operator (or a test) can tell it apart in pg_stat_activity.
        settings = {**params.pop("server_settings", {}), "application_name": APPLICATION_NAME}
        return await asyncpg.connect(*args, timeout=10, server_settings=settings, **params)

    async def _run(self) -> None:
        delay = RECONNECT_SECONDS[0]
        while not self._stop.is_set():
            try:
                connection = await self._connect()
            except Exception as exc:  # the database is down or refuses: the poll goes on
                log.warning("outbox_listener_unavailable", error=str(exc)[:200], retry=delay)
                await _pause(self._stop, delay)
                delay = min(delay * 2, RECONNECT_SECONDS[1])
                continue
            try:
                await self._listen(connection)
                delay = RECONNECT_SECONDS[0]
            except Exception as exc:
                log.warning("outbox_listener_lost", error=str(exc)[:200])
                await _pause(self._stop, delay)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), 5)

    async def _listen(self, connection: Any) -> None:
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _c: lost.set())
        await connection.add_listener(CHANNEL, self._notified)
        self.connections += 1
        self.connected.set()
        if self.connections > 1:
            log.info("outbox_listener_reconnected")
        self.wakeup.set()  # whatever committed while nobody listened
        while not self._stop.is_set():
            await _first(lost, self._stop, KEEPALIVE_SECONDS)
            if lost.is_set() or connection.is_closed():
                raise ConnectionError("the listening connection was closed")
            if not self._stop.is_set():  # idle for a while: is the server still there?
                await asyncio.wait_for(connection.execute("SELECT 1"), 10)


async def _first(one: asyncio.Event, other: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(one.wait()), asyncio.ensure_future(other.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when="FIRST_COMPLETED")
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
