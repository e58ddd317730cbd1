from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow import db
from opsflow.db import insert_rows, memo
from opsflow.models.sla import (
    BusinessCalendarRow,
    SlaClock,
    SlaEvent,
    SlaPolicyRow,
    SlaSettingsRow,
)
from opsflow.models.task import Task
from opsflow.tasks.summary import SUMMARY_COLUMNS, task_summary

if TYPE_CHECKING:  # keeps the engine process from importing FastAPI
    from opsflow.kit.pagination import PageParams


async def claim_due(session: AsyncSession, now: datetime, limit: int) -> list[SlaClock]:
    """Lock up to `limit` clocks whose next threshold is due.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so engines running side by side each take a
    different batch. SQLite serialises writers, so the lock clause is not needed there.
    """
    return await db.claim_due(session, SlaClock, SlaClock.next_fire_at, now, limit)


async def next_due(session: AsyncSession) -> datetime | None:
    """The earliest next_fire_at (the first entry of the partial index)."""
    query = select(func.min(SlaClock.next_fire_at)).where(SlaClock.next_fire_at.is_not(None))
    value: datetime | None = await session.scalar(query)
    return value


async def tasks_by_id(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, Task]:
    if not ids:
        return {}
    return {task.id: task for task in await session.scalars(select(Task).where(Task.id.in_(ids)))}


async def task_summaries(
    session: AsyncSession, ids: set[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    """The tasks as events carry them (:func:`task_summary`), reading only those columns."""
    if not ids:
        return {}
    query = select(*SUMMARY_COLUMNS).where(Task.id.in_(ids))
    rows: list[Row[Any]] = list(await session.execute(query))
    return {row.id: task_summary(row) for row in rows}


async def insert_events(session: AsyncSession, events: list[dict[str, Any]]) -> None:
    """SLA events (column values) in one multi-row insert."""
    if events:
        await insert_rows(session, SlaEvent, events)


CLOCKS = "sla_clocks"  # db.memo kind: task id -> {kind: clock}


def remember_clocks(session: AsyncSession, task_id: uuid.UUID, clocks: Sequence[SlaClock]) -> None:
    """The task's clocks, just added to the session: later reads in this unit of work use them."""
    memo(session, CLOCKS)[task_id] = {clock.kind: clock for clock in clocks}


async def clocks_of(
    session: AsyncSession, task_id: uuid.UUID, *, for_update: bool = False
) -> dict[str, SlaClock]:
    return (await clocks_for_tasks(session, [task_id], for_update=for_update)).get(task_id, {})


_CLOCKS = select(SlaClock).where(SlaClock.task_id.in_(bindparam("task_ids", expanding=True)))
_CLOCKS_FOR_UPDATE = _CLOCKS.order_by(SlaClock.task_id, SlaClock.kind).with_for_update()


async def clocks_for_tasks(
    session: AsyncSession, task_ids: Sequence[uuid.UUID], *, for_update: bool = False
) -> dict[uuid.UUID, dict[str, SlaClock]]:
    """Each task's clocks by kind (tasks without clocks are left out). Clocks this unit of
    work already loaded are not read again, unless they must be locked."""
    known: dict[uuid.UUID, dict[str, SlaClock]] = memo(session, CLOCKS)
    wanted = set(task_ids)
    missing = wanted if for_update else wanted - known.keys()
    if missing:
        # Built once: constructing a statement costs about as much CPU as running it.
        query = _CLOCKS_FOR_UPDATE if for_update else _CLOCKS
        loaded: dict[uuid.UUID, dict[str, SlaClock]] = {task_id: {} for task_id in missing}
        for clock in await session.scalars(query, {"task_ids": list(missing)}):
            loaded[clock.task_id][clock.kind] = clock
        known.update(loaded)
    return {task_id: known[task_id] for task_id in wanted if known[task_id]}


async def open_clocks_with_calendar(
    session: AsyncSession, calendar_id: uuid.UUID
) -> list[SlaClock]:
    """Clocks under a calendar that may still fire (running, paused, or with a pending
    threshold), locked for the reschedule."""
    query = (
        select(SlaClock)
        .where(
            SlaClock.calendar_id == calendar_id,
            (SlaClock.stopped_at.is_(None)) | (SlaClock.next_fire_at.is_not(None)),
        )
        .with_for_update()
    )
    return list(await session.scalars(query))


# --- policies, calendars, settings ------------------------------------------------------------

PolicyWithCalendar = tuple[SlaPolicyRow, BusinessCalendarRow | None]


# Built once: every task created reads the active policies, and building the statement
# cost about as much CPU as running it.
_ACTIVE_POLICIES = (
    select(SlaPolicyRow, BusinessCalendarRow)
    .outerjoin(BusinessCalendarRow, SlaPolicyRow.calendar_id == BusinessCalendarRow.id)
    .where(SlaPolicyRow.is_active.is_(True))
)


async def active_policies(session: AsyncSession) -> list[PolicyWithCalendar]:
    return [(row, calendar) for row, calendar in (await session.execute(_ACTIVE_POLICIES)).all()]


# The SLA configuration's version: what the policy catalog cache is keyed by. Raw values
# (no type processing): they are only compared.
_CONFIG_VERSION = text("SELECT revision, updated_at FROM sla_settings WHERE id = 1")


async def config_version(session: AsyncSession) -> tuple[Any, ...]:
    """(revision, updated_at) of the settings row; () when there is none (every change to
    the configuration writes the row, so its absence is a version too)."""
    # On the connection, not through the ORM session: no entities, and about half the
    # Python work of a session execute.
    connection = await session.connection()
    row = (await connection.execute(_CONFIG_VERSION)).first()
    return tuple(row) if row is not None else ()


async def all_policies(session: AsyncSession) -> list[SlaPolicyRow]:
    return list(await session.scalars(select(SlaPolicyRow).order_by(SlaPolicyRow.name)))


async def all_calendars(session: AsyncSession) -> list[BusinessCalendarRow]:
    return list(
        await session.scalars(select(BusinessCalendarRow).order_by(BusinessCalendarRow.name))
    )


async def get_policy(
    session: AsyncSession, policy_id: uuid.UUID, *, for_update: bool = False
) -> SlaPolicyRow | None:
    return await session.get(SlaPolicyRow, policy_id, with_for_update=for_update)


async def get_calendar(
    session: AsyncSession, calendar_id: uuid.UUID, *, for_update: bool = False
) -> BusinessCalendarRow | None:
    return await session.get(BusinessCalendarRow, calendar_id, with_for_update=for_update)


async def policies_using_calendar(
    session: AsyncSession, calendar_id: uuid.UUID
) -> list[SlaPolicyRow]:
    query = select(SlaPolicyRow).where(SlaPolicyRow.calendar_id == calendar_id)
    return list(await session.scalars(query.order_by(SlaPolicyRow.name)))


async def settings_row(session: AsyncSession, *, for_update: bool = False) -> SlaSettingsRow:
    """The one settings row (created with the defaults if missing: migration 0004 inserts
    it, a truncated table gets it back). Locking it serialises every change to the SLA
    configuration."""
    query = select(SlaSettingsRow).where(SlaSettingsRow.id == 1)
    if for_update:
        query = query.with_for_update()
    row = await session.scalar(query)
    if row is not None:
        return row
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    await session.execute(
        insert(SlaSettingsRow)
        .values(
            id=1,
            thresholds=[75.0, 95.0],
            escalation_levels=[],
            default_pause_on_blocked=False,
            revision=0,
        )
        .on_conflict_do_nothing()
    )
    row = await session.scalar(query.execution_options(populate_existing=True))
    assert row is not None
    return row


async def events_of(session: AsyncSession, task_ids: Sequence[uuid.UUID]) -> list[SlaEvent]:
    if not task_ids:
        return []
    rows = await session.scalars(
        select(SlaEvent)
        .where(SlaEvent.task_id.in_(set(task_ids)))
        .order_by(SlaEvent.due_at, SlaEvent.event_type)
    )
    return list(rows)


@dataclass(frozen=True)
class EventFilters:
    event_type: str | None = None
    severity: str | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    task_id: uuid.UUID | None = None


async def search_events(
    session: AsyncSession, filters: EventFilters, params: PageParams
) -> tuple[list[SlaEvent], int]:
    query = select(SlaEvent)
    if filters.event_type:
        query = query.where(SlaEvent.event_type == filters.event_type)
    if filters.severity:
        query = query.where(SlaEvent.severity == filters.severity)
    if filters.start_date:
        query = query.where(SlaEvent.triggered_at >= filters.start_date)
    if filters.end_date:
        query = query.where(SlaEvent.triggered_at <= filters.end_date)
    if filters.task_id:
        query = query.where(SlaEvent.task_id == filters.task_id)
    total = int(await session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = await session.scalars(
        query.order_by(SlaEvent.triggered_at.desc(), SlaEvent.id)
        .offset(params.offset)
        .limit(params.page_size)
    )
    return list(rows), total
