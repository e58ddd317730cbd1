"""Filling an empty database with the demo's month, in bulk.

Tasks are played one by one in the order they were created (`histories.play`). Their
audit rows and outbox events are merged across tasks by instant, so the audit chain and
the outbox are in the order a live system would have written them: the rows are chained
with the audit writer's own `chain`, the streamed events numbered like the realtime
consumer numbers them, and every event is marked published by the relay a moment after it
was written (nothing is delivered again). Rows are inserted in batches, one transaction
per batch.

A large month plays one task in every few and writes the others as shifted copies of it
(`copies`): at most `PLAYED` histories are played, whatever the number of tasks. The
copies' audit rows join the same merge by instant and the same chain.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Table, func, inspect, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from opsflow.audit import writer as audit_writer
from opsflow.audit.chain import GENESIS_HASH
from opsflow.auth.principal import Principal
from opsflow.clock import SettableClock
from opsflow.context import AppContext
from opsflow.db import Base, unit_of_work
from opsflow.demo import copies
from opsflow.demo.directory import SLA_CONFIG, Directory, build_directory, principal
from opsflow.demo.histories import Played, World, play
from opsflow.demo.notifications import notifications
from opsflow.demo.recorder import Recorder
from opsflow.errors import Conflict
from opsflow.models.audit import AuditLog
from opsflow.models.collaboration import Comment
from opsflow.models.escalation import EscalationEvent
from opsflow.models.notification import Notification
from opsflow.models.outbox import OutboxEvent
from opsflow.models.sla import SlaClock, SlaEvent
from opsflow.models.task import Task
from opsflow.models.team import Team
from opsflow.models.user import User
from opsflow.realtime.consumer import is_streamed
from opsflow.reports import service as reports
from opsflow.sla import service as sla_service
from opsflow.sla_config import service as sla_config
from opsflow.teams import service as team_service
from opsflow.users import service as user_service

MAX_TASKS = 1_000_000
DAYS = 30
# Tables whose rows make a database "not empty" for the demo.
OCCUPIED = (User, Team, Task, AuditLog)
# Insertion order within a batch (foreign keys first).
TASK_ROWS = (Task, SlaClock, SlaEvent, Comment, EscalationEvent, Notification)
# Histories played through the rules at most; the other tasks are copies of them.
PLAYED = 5_000


class NotEmpty(Conflict):
    """The database already holds data and the caller did not ask to replace it."""


@dataclass
class Summary:
    tasks: int
    users: int
    teams: int
    rows: dict[str, int]
    start: datetime
    end: datetime
    seconds: float
    password: str
    # Clocks' working times and tasks' breach instants the reports' rebuild had to change
    # (0: the clock changes had stored them exactly).
    rebuilt: int = 0
    usernames: dict[str, list[str]] = field(default_factory=dict)


Progress = Callable[[int, int], None]


async def occupied(ctx: AppContext) -> dict[str, int]:
    """Row counts of the tables that make a database non-empty (only those with rows)."""
    counts: dict[str, int] = {}
    async with ctx.engine.connect() as conn:
        for model in OCCUPIED:
            table: Table = model.__table__  # type: ignore[assignment]
            count = int(await conn.scalar(select(func.count()).select_from(table)) or 0)
            if count:
                counts[table.name] = count
    return counts


async def wipe(ctx: AppContext) -> None:
    """Delete every row of every OpsFlow table (the schema and its version stay)."""
    async with ctx.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await conn.exec_driver_sql(f"TRUNCATE {names} CASCADE")
        else:
            await conn.execute(update(Team).values(lead_id=None))
            for table in reversed(Base.metadata.sorted_tables):
                await conn.execute(table.delete())


# The secondary indexes of the tables the month fills (PostgreSQL): the ones of a
# constraint (primary keys, unique constraints) stay.
_INDEXES = """
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
WHERE t.relname = ANY(:tables) AND t.relnamespace = current_schema()::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
"""


@asynccontextmanager
async def _indexes_built_after(ctx: AppContext) -> AsyncIterator[None]:
    """On PostgreSQL, drop the filled tables' secondary indexes for the load and build them
    again at its end (whatever happens): one sort per index instead of an insertion per
    row, the usual way to fill empty tables. Elsewhere, nothing."""
    if ctx.engine.dialect.name != "postgresql":
        yield
        return
    tables = [_columns(model).table.name for model in (*TASK_ROWS, AuditLog, OutboxEvent)]
    async with ctx.engine.begin() as conn:
        found = (await conn.execute(text(_INDEXES), {"tables": tables})).all()
        for name, _ in found:
            await conn.exec_driver_sql(f"DROP INDEX {name}")
    try:
        yield
    finally:
        async with ctx.engine.begin() as conn:
            for _, definition in found:
                await conn.exec_driver_sql(definition)


def creation_instants(
    rng: random.Random, count: int, start: datetime, end: datetime
) -> list[datetime]:
    """`count` instants in [start, end), busier on weekdays and in the (UTC) daytime."""
    span = (end - start).total_seconds()
    instants: list[datetime] = []
    while len(instants) < count:
        at = start + timedelta(seconds=rng.random() * span)
        weight = (0.35 if at.weekday() >= 5 else 1.0) * (
            0.3 + 0.7 * math.sin(math.pi * ((at.hour + at.minute / 60) % 24) / 24) ** 2
        )
        if rng.random() < weight:
            instants.append(at)
    instants.sort()
    return instants


class _Columns:
    """A model's rows as plain column values for a bulk INSERT or COPY, defaults filled in."""

    def __init__(self, model: type[Base]) -> None:
        self.table: Table = model.__table__  # type: ignore[assignment]
        self.columns: list[tuple[str, str, Any, bool]] = []
        for attr in inspect(model).column_attrs:
            column = attr.columns[0]
            default = (
                column.default.arg
                if column.default is not None and column.default.is_scalar
                else None
            )
            is_json = isinstance(column.type, JSON) or isinstance(
                column.type.dialect_impl(_PG), JSON
            )
            self.columns.append((attr.key, column.key, default, is_json))
        self.names = [name for _, name, _, _ in self.columns]
        self.defaults = [(key, default) for key, _, default, _ in self.columns]

    def rows(self, objects: Iterable[Any]) -> list[dict[str, Any]]:
        result = []
        for obj in objects:
            if isinstance(obj, tuple):  # already a record (a copy's row)
                obj = dict(zip([key for key, _ in self.defaults], obj, strict=True))
            values = obj if isinstance(obj, dict) else obj.__dict__
            row = {name: values.get(key, default) for key, name, default, _ in self.columns}
            for name, value in row.items():
                if isinstance(value, copies.RawJson):
                    row[name] = json.loads(value)
            result.append(row)
        return result

    def records(self, objects: Iterable[Any]) -> list[tuple[Any, ...]]:
        """Rows (ORM objects, or their values by attribute name) as COPY records: JSON
        values as their text (what the driver's codec takes)."""
        result = []
        dumps = json.dumps
        for obj in objects:
            if isinstance(obj, tuple):  # already a record (a copy's row)
                result.append(obj)
                continue
            values = obj if isinstance(obj, dict) else obj.__dict__
            result.append(
                tuple(
                    _json_text(values.get(key, default), dumps)
                    if is_json
                    else values.get(key, default)
                    for key, _, default, is_json in self.columns
                )
            )
        return result


def _json_text(value: Any, dumps: Callable[[Any], str]) -> str:
    return value if isinstance(value, copies.RawJson) else dumps(value)


_PG = postgresql.dialect()  # type: ignore[no-untyped-call]
_COLUMNS: dict[type, _Columns] = {}


def _columns(model: type[Base]) -> _Columns:
    if model not in _COLUMNS:
        _COLUMNS[model] = _Columns(model)
    return _COLUMNS[model]


async def _insert(conn: AsyncConnection, model: type[Base], objects: Sequence[Any]) -> None:
    """Insert in bulk: COPY on PostgreSQL, multi-row INSERTs elsewhere."""
    if not objects:
        return
    columns = _columns(model)
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.copy_records_to_table(
            columns.table.name, records=columns.records(objects), columns=columns.names
        )
        return
    for index in range(0, len(objects), 5000):
        await conn.execute(columns.table.insert(), columns.rows(objects[index : index + 5000]))


# An audit row to chain (a played one, or a copy's) and its outbox event (copies: none).
Change = tuple[audit_writer.Pending | tuple[copies.AuditCopy, copies.Shift], OutboxEvent | None]


@dataclass
class _Chain:
    """The audit chain's head and the stream's last number, carried across batches."""

    seq: int
    prev_hash: str
    stream_seq: int
    rng: random.Random
    end: datetime
    counts: dict[str, int] = field(default_factory=dict)

    def seal(self, changes: Sequence[Change]) -> tuple[list[dict[str, Any]], list[OutboxEvent]]:
        rows: list[dict[str, Any]] = []
        events: list[OutboxEvent] = []
        for item, event in changes:
            if isinstance(item, audit_writer.Pending):
                row = audit_writer.chain([item], self.seq, self.prev_hash)[0]
            else:
                row = item[0].render(item[1], self.seq + 1, self.prev_hash)
            self.seq, self.prev_hash = row["seq"], row["hash"]
            rows.append(row)
            if event is not None:
                events.append(event)
        for event in events:
            # The relay publishes a moment later; streamed events get the next number.
            relayed = event.created_at + timedelta(milliseconds=self.rng.uniform(20, 400))
            event.published_at = min(relayed, self.end)
            event.attempts = 1
            if is_streamed(event):
                self.stream_seq += 1
                event.stream_seq = self.stream_seq
        return rows, events

    def count(self, name: str, amount: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + amount


async def _chain_head(ctx: AppContext) -> tuple[int, str]:
    async with ctx.engine.connect() as conn:
        last = (
            await conn.execute(
                select(AuditLog.seq, AuditLog.hash)
                .where(AuditLog.seq.is_not(None))  # past the index entries of sealed rows
                .order_by(AuditLog.seq.desc())
                .limit(1)
            )
        ).first()
    return (int(last[0]), str(last[1])) if last else (0, GENESIS_HASH)


async def _configure_sla(ctx: AppContext, at: datetime) -> None:
    """The demo's SLA policies and calendars, applied like `opsflow sla import`."""
    async with unit_of_work(ctx.sessions) as session:
        await sla_config.apply_config(
            session,
            Principal.system("demo"),
            sla_config.parse(SLA_CONFIG),
            at,
            mode="replace",
            origin="opsflow demo",
        )
    # Relayed a moment later, like every other event of the demo's past.
    async with ctx.engine.begin() as conn:
        await conn.execute(
            update(OutboxEvent)
            .where(OutboxEvent.published_at.is_(None))
            .values(published_at=at + timedelta(milliseconds=200), attempts=1)
        )


async def _people(ctx: AppContext, directory: Directory, at: datetime) -> Recorder:
    """Teams and users inserted, their creation recorded like the team and user services do."""
    recorder = Recorder()
    session = recorder.session
    admin = directory.admin
    assert admin is not None
    user_service._record(
        session,
        Principal.system("demo"),
        admin,
        "USER_CREATED",
        "user.created",
        at,
        new_state=user_service.user_state(admin),
    )
    actor = principal(admin)
    for team in directory.teams:
        team_service._record(
            session,
            actor,
            team,
            "TEAM_CREATED",
            "team.created",
            at,
            new_state=team_service.team_state(team),
        )
    for user in directory.users:
        if user is not admin:
            user_service._record(
                session,
                actor,
                user,
                "USER_CREATED",
                "user.created",
                at,
                new_state=user_service.user_state(user),
            )
    async with ctx.engine.begin() as conn:
        leads = {team.id: team.lead_id for team in directory.teams}
        for team in directory.teams:
            team.lead_id = None
        await _insert(conn, Team, directory.teams)
        await _insert(conn, User, directory.users)
        for team in directory.teams:
            team.lead_id = leads[team.id]
            await conn.execute(update(Team).where(Team.id == team.id).values(lead_id=team.lead_id))
    return recorder


async def load_demo(
    ctx: AppContext,
    *,
    tasks: int,
    seed: int,
    password: str,
    replace: bool = False,
    batch: int = 2000,
    progress: Progress | None = None,
    played: int = PLAYED,
) -> Summary:
    """Fill the database with a month of history ending at `ctx.clock.now()`: refuses a
    database with users, teams, tasks or audit rows unless `replace` (which first deletes
    every row). At most `played` histories are played; the other tasks are copies."""
    if not 1 <= tasks <= MAX_TASKS:
        raise ValueError(f"tasks must be between 1 and {MAX_TASKS}")
    began = time.perf_counter()
    found = await occupied(ctx)
    if found and not replace:
        raise NotEmpty(
            "The database is not empty: "
            + ", ".join(f"{count} {name}" for name, count in found.items())
            + ". Use an empty database, or --force to delete everything first.",
            rows=found,
        )
    if found:
        await wipe(ctx)
    end = ctx.clock.now()
    start = end - timedelta(days=DAYS)
    setup = start - timedelta(days=1)
    rng = random.Random(seed)  # noqa: S311 - demo data, reproducible by seed
    await _configure_sla(ctx, setup)
    hashed = await ctx.passwords.hash(password)
    directory = build_directory(rng, hashed, setup)
    people = await _people(ctx, directory, setup + timedelta(seconds=1))
    async with unit_of_work(ctx.read_sessions) as session:
        catalog = await sla_service.load_catalog(session)

    clock = SettableClock(start)
    world = World(
        ctx=_with_clock(ctx, clock), clock=clock, directory=directory, catalog=catalog, end=end
    )
    seq, prev_hash = await _chain_head(ctx)
    async with ctx.engine.connect() as conn:
        last_stream = await conn.scalar(select(func.max(OutboxEvent.stream_seq)))
    chain = _Chain(seq, prev_hash, int(last_stream or 0), random.Random(seed + 1), end)  # noqa: S311
    _, pending, events = people.take()
    ready: list[Change] = list(zip(pending, events, strict=True))
    queue: list[tuple[datetime, int, int, Change]] = []
    buffered: dict[type, list[Any]] = {model: [] for model in TASK_ROWS}
    instants = creation_instants(rng, tasks, start, end)
    users = {user.id: user for user in directory.users}
    every = max(1, math.ceil(tasks / max(1, played)))
    done = 0

    async def write() -> None:
        audit_rows, outbox_rows = chain.seal(ready)
        async with ctx.engine.begin() as conn:
            for model in TASK_ROWS:
                await _insert(conn, model, buffered[model])
                chain.count(_columns(model).table.name, len(buffered[model]))
                buffered[model].clear()
            await _insert(conn, AuditLog, audit_rows)
            await _insert(conn, OutboxEvent, outbox_rows)
        chain.count("audit_logs", len(audit_rows))
        chain.count("outbox_events", len(outbox_rows))
        ready.clear()
        if progress is not None:
            progress(done, tasks)

    async with _indexes_built_after(ctx):
        for first in range(0, tasks, every):
            group = instants[first : first + every]
            # The last of the group is played; the ones before are copies moved back in time.
            last = first + len(group) - 1
            history = await play(world, rng, group[-1], last)
            rows = [*history.rows, *notifications(history.task, _events(history), users, end)]
            template = _template(history, rows) if len(group) > 1 else None
            models = _models(rows)
            for index, created_at in enumerate(group, start=first):
                while queue and queue[0][0] <= created_at:
                    ready.append(heapq.heappop(queue)[3])
                if template is None or index == last:
                    for row in rows:
                        buffered[type(row)].append(row)
                    changes: list[tuple[datetime, Change]] = [
                        (item.timestamp, (item, event)) for item, event in history.changes
                    ]
                else:
                    copied, audit = template.copy(created_at - group[-1])
                    for model, row in zip(models, copied, strict=True):
                        buffered[model].append(row)
                    changes = [
                        (item.timestamp + shift.delta, ((item, shift), None))
                        for item, shift in audit
                    ]
                for position, (at, change) in enumerate(changes):
                    heapq.heappush(queue, (at, index, position, change))
                done = index + 1
                if done % batch == 0:
                    await write()
        while queue:
            ready.append(heapq.heappop(queue)[3])
        await write()
    # What the reports keep beside the rows, recomputed as `opsflow reports rebuild` does.
    async with unit_of_work(ctx.sessions) as session:
        rebuilt = await reports.rebuild(session)
    return Summary(
        tasks=tasks,
        users=len(directory.users),
        teams=len(directory.teams),
        rows=chain.counts,
        start=start,
        end=end,
        seconds=time.perf_counter() - began,
        password=password,
        rebuilt=rebuilt,
        usernames={
            role: [u.username for u in directory.users if u.role == role]
            for role in dict.fromkeys(u.role for u in directory.users)
        },
    )


def _events(history: Played) -> list[OutboxEvent]:
    return [event for _, event in history.changes]


def _models(rows: list[Any]) -> list[type]:
    return [type(row) for row in rows]


def _template(history: Played, rows: list[Any]) -> copies.Template:
    """The played history compiled for copying: the ids it owns are its rows', its outbox
    events' and its escalation runs'."""
    owned: set[uuid.UUID] = {row.id for row in rows}
    owned.update(event.id for event in _events(history))
    owned.update(row.run_id for row in rows if isinstance(row, EscalationEvent))
    return copies.compile_template(
        rows, [item for item, _ in history.changes], owned, lambda model: _columns(model).defaults
    )


def _with_clock(ctx: AppContext, clock: SettableClock) -> AppContext:
    """The context the histories run in: the same collaborators, the demo's own clock."""
    import dataclasses

    return dataclasses.replace(ctx, clock=clock)


def new_password() -> str:
    """A demo password (printed at the end of `opsflow demo`)."""
    return "demo-" + uuid.uuid4().hex[:12]
