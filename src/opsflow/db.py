"""Database plumbing: declarative Base, engine and session factory, the unit of work.

One transaction per unit of work, owned by the edge: a request (or a worker job)
opens a session with :func:`unit_of_work`, services only ``flush()``, and the edge
commits once at the end. Nothing else calls ``commit()``.
"""

from __future__ import annotations

import asyncio
import json
import json.scanner
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, MetaData, Select, event, exc, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute, Session
from sqlalchemy.pool import ConnectionPoolEntry

from opsflow.events import wake
from opsflow.kit import unnest

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, ConnectionPoolEntry], None]:
    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN IMMEDIATE (see _sqlite_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    return on_connect


READ_ONLY_OPTION = "opsflow_read_only"


def _sqlite_begin(connection: Any) -> None:
    # A deferred transaction that reads and then writes fails with SQLITE_BUSY when another
    # writer committed in between; taking the write lock at BEGIN makes writers queue instead.
    # Read-only units of work (safe HTTP methods) begin deferred and never wait for writers.
    if connection.get_execution_options().get(READ_ONLY_OPTION):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@dataclass
class _SqliteWriters:
    """The queue of one SQLite engine's write units of work in this process (see
    :func:`_sqlite_write_turn`). The lock belongs to the event loop that first used it."""

    wait_seconds: float
    loop: asyncio.AbstractEventLoop | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, _SqliteWriters] = weakref.WeakKeyDictionary()
_HOLDS_SQLITE_WRITE: ContextVar[bool] = ContextVar("opsflow_holds_sqlite_write", default=False)


# The C scanner behind json.loads, called directly: json.loads wraps it in three Python
# calls and two regular-expression matches (leading and trailing whitespace) per value,
# more than the scan of the small documents a row's JSON columns hold (a page of tasks
# reads about 160 of them).
_SCAN_JSON: Any = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def loads_json(text: str) -> Any:
    """A JSON column's value as the database gives it; anything but one bare document
    (whitespace around it, invalid text) takes json.loads, with its errors."""
    try:
        value, end = _SCAN_JSON(text, 0)
    except StopIteration:
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return value


def create_engine(
    url: str,
    *,
    sqlite_busy_timeout_ms: int = 10_000,
    pool_size: int = 20,
    max_overflow: int = 0,
    pool_timeout: float = 30.0,
    **kwargs: Any,
) -> AsyncEngine:
    """The process's engine. On PostgreSQL a pool of `pool_size` connections kept open;
    `max_overflow` more are opened under load past it and closed when the pool has
    enough idle ones again (see `Settings.db_pool_size`); a checkout waits at most
    `pool_timeout` seconds, then fails with a pool timeout (the API answers 503)."""
    kwargs.setdefault("json_deserializer", loads_json)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(sqlite_busy_timeout_ms))
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        _SQLITE_WRITERS[engine.sync_engine] = _SqliteWriters(sqlite_busy_timeout_ms / 1000)
        return engine
    kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout)
    engine = create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine, "do_connect", _wake_token)
    if not kwargs.get("pool_pre_ping"):
        event.listen(engine.sync_engine, "checkin", _note_checkin)
        event.listen(engine.sync_engine, "checkout", _ping_if_idle)
    return engine


def _wake_token(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
    """A new PostgreSQL connection carries this process's wake token (`events/wake.py`):
    the outbox table's trigger notifies the relays with it."""
    settings = wake.connection_settings()
    if settings:
        params["server_settings"] = {**params.get("server_settings", {}), **settings}


# A pooled PostgreSQL connection is pinged before use only when it sat idle longer than
# this. SQLAlchemy's pre-ping would cost three round trips (BEGIN, a ping, ROLLBACK) on
# every checkout, as many as a whole short request; a connection in steady use is known
# to be alive. One that died while busy (the server restarted) fails its request with a
# 503, and that error invalidates the whole pool, so the next checkouts reconnect.
# Pool bookkeeping is about connection age, not business time, so it reads the
# monotonic clock rather than the injected one.
IDLE_PING_SECONDS = 5.0
_CHECKED_IN_AT = "opsflow_checked_in_at"


def _note_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info[_CHECKED_IN_AT] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
    checked_in = record.info.get(_CHECKED_IN_AT)
    if checked_in is None or time.monotonic() - checked_in < IDLE_PING_SECONDS:
        return
    try:
        dbapi_connection.ping()
    except Exception as error:  # any failure means: do not hand this connection out
        # The pool discards this connection and checks out (or opens) another.
        raise exc.DisconnectionError(str(error)) from error


def create_sessionmaker(
    engine: AsyncEngine, *, read_only: bool = False, snapshot: bool = False
) -> async_sessionmaker[AsyncSession]:
    """Sessions for units of work; `read_only` ones serve the safe HTTP methods.

    A `snapshot` read-only unit of work (the reports) reads every statement from one
    snapshot: on PostgreSQL a READ ONLY transaction in REPEATABLE READ, so the numbers of
    a report made of several statements add up even while tasks change, and the settings
    a report sets for its transaction (``SET LOCAL``) apply to all of them.

    On PostgreSQL a read-only unit of work runs its statements in autocommit: under READ
    COMMITTED each statement sees its own snapshot inside a transaction too, so BEGIN and
    COMMIT (two round trips of a request that often makes four) bought nothing. Such a
    connection refuses to write (see `_refuse_writes`), since a write there would not be
    atomic. On SQLite a read transaction does hold one snapshot, so it keeps it.
    """
    options: dict[str, Any] = {READ_ONLY_OPTION: True}
    if read_only and snapshot and engine.dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"
        options["postgresql_readonly"] = True
    elif read_only and engine.dialect.name == "postgresql":
        options["isolation_level"] = "AUTOCOMMIT"
        if not event.contains(engine.sync_engine, "before_cursor_execute", _refuse_writes):
            event.listen(engine.sync_engine, "before_cursor_execute", _refuse_writes)
    bind = engine.execution_options(**options) if read_only else engine
    # expire_on_commit=False: responses are built from objects after the edge commits.
    return async_sessionmaker(bind, expire_on_commit=False, autoflush=False)


_WRITES = ("INSERT", "UPDATE", "DELETE", "MERGE")


def _refuse_writes(
    connection: Any, _cursor: Any, statement: str, _parameters: Any, _context: Any, _many: bool
) -> None:
    if (
        statement[:6].upper().startswith(_WRITES)
        and connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        and connection.get_execution_options().get(READ_ONLY_OPTION)
    ):
        raise RuntimeError("a read-only unit of work tried to write: " + statement[:80])


_T = TypeVar("_T")


_Row = TypeVar("_Row", bound=Base)


async def claim(session: AsyncSession, query: Select[_Row]) -> list[_Row]:
    """The rows of `query`, locked for this unit of work without waiting for rows another
    one holds: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so passes side by side (threads,
    processes, hosts) each take different rows. SQLite serialises writers (a write
    transaction begins IMMEDIATE), so it needs no lock clause."""
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(await session.scalars(query))


async def claim_due(
    session: AsyncSession,
    model: type[_Row],
    instant: InstrumentedAttribute[datetime] | InstrumentedAttribute[datetime | None],
    now: datetime,
    limit: int,
    *,
    where: Sequence[ColumnElement[bool]] = (),
    order_by: Sequence[Any] = (),
) -> list[_Row]:
    """Lock (see :func:`claim`) up to `limit` rows of `model` whose `instant` has come
    (``instant <= now``) and that match `where`, the most overdue first (`order_by`: another
    order, e.g. with a tie-breaker). How every engine pass takes its work."""
    query = (
        select(model).where(instant <= now, *where).order_by(*(order_by or (instant,))).limit(limit)
    )
    return await claim(session, query)


PreCommitHook = Callable[[AsyncSession], Awaitable[None]]


def add_pre_commit_hook(
    session: AsyncSession, key: str, hook: PreCommitHook, *, first: bool = False
) -> None:
    """Register `hook` to run once, just before this unit of work commits.

    The audit writer uses it to append its rows last, so the lock that orders the hash
    chain is held only for the final inserts and the commit. A hook registered `first`
    runs before those registered earlier (the outbox's notification: one round trip that
    need not wait under that lock).
    """
    hooks: dict[str, PreCommitHook] = session.info.setdefault("pre_commit_hooks", {})
    if key in hooks:
        return
    if first:
        session.info["pre_commit_hooks"] = {key: hook, **hooks}
    else:
        hooks[key] = hook


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` once this unit of work has committed (never if it rolls back).

    For in-process side effects only (metrics); anything that leaves the process goes
    through the outbox.
    """
    session.info.setdefault("after_commit", []).append(callback)


class _Memo(dict[str, dict[Any, Any]]):
    """Rows a unit of work already loaded, by kind (see :func:`memo`). A class of its own so
    that :func:`savepoint` does not carry it over a rollback: it is dropped instead."""


_MEMO = "opsflow.memo"


def memo(session: AsyncSession | Session, kind: str) -> dict[Any, Any]:
    """What this unit of work already loaded of `kind` (e.g. a task's clocks), by key.

    A repository reads through it so that a request that loaded and changed a task's rows
    does not read them again to build its answer. It holds the session's own
    identity-mapped objects, which an ORM query would return unchanged anyway (a loaded
    object is not overwritten by a second SELECT), so it can never be staler than the
    query it saves. It is dropped when the transaction commits or rolls back (a savepoint
    included), and a read that must lock rows (FOR UPDATE) always queries.
    """
    found = session.info.get(_MEMO)
    if not isinstance(found, _Memo):
        found = session.info[_MEMO] = _Memo()
    return found.setdefault(kind, {})


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_soft_rollback")
def _forget_memo(session: Session, *_args: Any) -> None:
    session.info.pop(_MEMO, None)


_SHARED = "opsflow.shared_reads"


def share_reads(session: AsyncSession) -> None:
    """Let the rest of this unit of work reuse what it read of slowly changing settings
    (see :func:`shared`). An engine pass that handles many rows in one transaction turns it
    on, so it reads, say, the active escalation policies once instead of once per row."""
    session.info[_SHARED] = {}


def shared(session: AsyncSession, kind: str) -> dict[Any, Any] | None:
    """The reads of `kind` this unit of work shares between the rows it handles (by key),
    or None where sharing is off (then read as usual).

    Unlike :func:`memo`, these survive savepoints, and what they hold may be older than
    a new query's answer: a change another transaction commits during the unit of work is
    seen only by the next one. Only reads of configuration that a pass never writes go
    here, and only in a unit of work that is one engine pass.
    """
    found = session.info.get(_SHARED)
    return None if found is None else found.setdefault(kind, {})


async def read_shared(
    session: AsyncSession, kind: str, key: Any, load: Callable[[], Awaitable[list[_T]]]
) -> list[_T]:
    """What `load` reads, read once per unit of work that shares its reads (by `kind` and
    `key`, see :func:`shared`) and at every call otherwise; a list of its own each time."""
    reads = shared(session, kind)
    if reads is None:
        return await load()
    if key not in reads:
        reads[key] = await load()
    return list(reads[key])


@asynccontextmanager
async def savepoint(session: AsyncSession) -> AsyncIterator[None]:
    """A part of a unit of work that can fail alone: on an exception its rows are rolled
    back to a SAVEPOINT and what it queued for commit time (audit rows, pre-commit hooks,
    after-commit callbacks, all kept in ``session.info``) is dropped with them.

    Batch endpoints use it so one bad item does not undo the items before it.
    """
    queued = {
        key: (list(value) if isinstance(value, list) else dict(value))
        for key, value in session.info.items()
        if isinstance(value, list | dict)
    }
    nested = await session.begin_nested()
    try:
        yield
    except BaseException:
        await nested.rollback()
        for key in list(session.info):
            if key not in queued:
                del session.info[key]
        session.info.update(queued)
        raise
    await nested.commit()


async def attempt(
    session: AsyncSession,
    work: Callable[[], Awaitable[_T]],
    *,
    expected: tuple[type[Exception], ...],
) -> _T | Exception:
    """One item of a batch, alone in a :func:`savepoint`: what `work` returns, or the
    exception of an `expected` kind it raised (its writes rolled back, the batch going on).
    Any other exception propagates and fails the batch."""
    try:
        async with savepoint(session):
            return await work()
    except expected as exc:
        return exc


async def commit(session: AsyncSession) -> None:
    hooks: dict[str, PreCommitHook] = session.info.pop("pre_commit_hooks", {})
    for hook in hooks.values():
        await hook(session)
    await session.commit()
    for callback in session.info.pop("after_commit", []):
        callback()


RollbackHook = Callable[[], Awaitable[None]]


def on_rollback(session: AsyncSession, hook: RollbackHook) -> None:
    """Run `hook` if this unit of work rolls back instead of committing (never after a
    commit). For undoing what the transaction cannot: a file stored before its row."""
    session.info.setdefault("on_rollback", []).append(hook)


async def _rolled_back(session: AsyncSession) -> None:
    for hook in session.info.pop("on_rollback", []):
        await hook()


def _keeps_changes(exc: BaseException) -> bool:
    return bool(getattr(exc, "keep_changes", False))


@asynccontextmanager
async def _sqlite_write_turn(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
    """Wait for this process's turn to write, when `factory` writes to SQLite.

    SQLite lets one transaction write at a time (every write unit of work begins with
    BEGIN IMMEDIATE). A writer that finds the lock taken waits in SQLite's busy handler,
    which polls with sleeps growing to 100 ms: under concurrent writes some requests waited
    seconds for work ahead of them that took milliseconds. Within one process the write
    units of work queue on an asyncio lock instead, first come first served, each woken the
    moment the one before it ends. The busy handler still arbitrates between processes (a
    CLI command beside the server) and for a unit of work opened inside another one (which
    skips the queue rather than wait for itself). A turn not given within the busy timeout
    is not waited for further: the unit of work goes on to SQLite's own waiting, as before.
    """
    bind = factory.kw.get("bind")
    writers = (
        _SQLITE_WRITERS.get(bind.sync_engine)
        if isinstance(bind, AsyncEngine)
        and not bind.get_execution_options().get(READ_ONLY_OPTION)
        and not _HOLDS_SQLITE_WRITE.get()
        else None
    )
    if writers is None:
        yield
        return
    loop = asyncio.get_running_loop()
    if writers.loop is not loop:  # a new event loop (tests, `asyncio.run` per command)
        writers.loop, writers.lock = loop, asyncio.Lock()
    lock = writers.lock
    try:
        async with asyncio.timeout(writers.wait_seconds):
            await lock.acquire()
        acquired = True
    except TimeoutError:
        acquired = False
    token = _HOLDS_SQLITE_WRITE.set(True)
    try:
        yield
    finally:
        _HOLDS_SQLITE_WRITE.reset(token)
        if acquired:
            lock.release()


@asynccontextmanager
async def unit_of_work(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """Open a session, commit once when the block succeeds, roll back otherwise.

    An exception that says ``keep_changes`` (see :class:`opsflow.errors.AppError`) still
    commits what was written before it propagates. On SQLite, write units of work of one
    process take turns (:func:`_sqlite_write_turn`).
    """
    async with _sqlite_write_turn(factory), factory() as session:
        try:
            yield session
        except BaseException as exc:
            if _keeps_changes(exc):
                await commit(session)
            else:
                session.info.pop("after_commit", None)
                await session.rollback()
                await _rolled_back(session)
            raise
        try:
            await commit(session)
        except BaseException:
            await _rolled_back(session)
            raise
        session.info.pop("on_rollback", None)


_COLUMN_NAMES: dict[type[Any], dict[str, str]] = {}


async def insert_rows(session: AsyncSession, model: type[Any], rows: list[dict[str, Any]]) -> None:
    """Insert many rows of `model` (values by attribute name, or by column name where the
    two differ), as one multi-row statement of the table: no ORM object per row, for rows
    nothing in the unit of work reads back as objects (audit rows, outbox events, SLA
    events of a pass, a ticket batch's tasks). The rows need the same keys.

    On PostgreSQL the statement is one INSERT ... SELECT FROM unnest(arrays) for all the
    rows (`kit.unnest.insert`): an executemany runs its statement once per row on the server, and
    with it, once per row, the statement-level triggers of the table (the report rollups of
    tasks and clocks, the outbox's announcement), and binds each row's values one by one."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        await unnest.insert(session, model, rows)
        return
    names = _COLUMN_NAMES.get(model)
    if names is None:
        mapper = sa_inspect(model)
        names = _COLUMN_NAMES[model] = {
            a.key: a.columns[0].name for a in mapper.column_attrs if a.key != a.columns[0].name
        }
    # Only the keys whose column is named otherwise are renamed (the rows share their keys):
    # most rows go to the statement as they are, without a copy.
    renames = [(key, names[key]) for key in rows[0] if key in names]
    if renames:
        rows = [_renamed(row, renames) for row in rows]
    await session.execute(model.__table__.insert(), rows)


def _renamed(row: dict[str, Any], renames: list[tuple[str, str]]) -> dict[str, Any]:
    row = dict(row)
    for key, column in renames:
        row[column] = row.pop(key)
    return row
