"""The reports' fast path on PostgreSQL: the quarter-hour rollups plus the live remainder.

A report's period `[start, end)` is split into the whole quarter hours it covers
(`slot` in `[first, last)`, read from the rollups, a few rows per quarter hour) and the
two partial quarter hours at its ends (read from `tasks` as the live path reads them,
through `ix_tasks_created_at`). Every tally row of the fast path has the shape of
`repository._tallied`'s rows, so the same fold applies to both.

Only one number depends on the moment of reading: a task counts as breached when its
`sla_breach_at` is at or before now. The rollup counts the tasks that have a breach
instant (`breach_known`); those whose instant is still ahead of now (the few open tasks
with a deadline to come, found through `ix_tasks_sla_breach_at`) are counted live and
subtracted. All of it is one statement, so one snapshot.

The rollups are kept by statement triggers on `tasks` (migration 0021) in the transaction
of every change; `FILL` is what `opsflow reports rebuild` writes, and `stale_rows` counts
how far the stored rollups are from it (0 when the triggers kept them exactly).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    and_,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.models.enums import TaskStatus, TaskType
from opsflow.models.report import SLOT_SECONDS, ReportAckSlot, ReportTagSlot, ReportTaskSlot
from opsflow.models.task import Task
from opsflow.reports import repository

if TYPE_CHECKING:
    from opsflow.reports.repository import ReportFilters

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SLOT = timedelta(seconds=SLOT_SECONDS)


@dataclass(frozen=True)
class Split:
    """The whole slots `[first, last)` inside `[start, end)`; `first >= last`: none."""

    start: datetime
    end: datetime
    first: int
    last: int
    step: timedelta = SLOT

    @property
    def whole(self) -> bool:
        return self.first < self.last

    @property
    def inner_start(self) -> datetime:
        return EPOCH + self.first * self.step

    @property
    def inner_end(self) -> datetime:
        return EPOCH + self.last * self.step

    def slots(self, slot: Any) -> ColumnElement[bool]:
        """A rollup's `slot` column among the whole slots."""
        return and_(slot >= self.first, slot < self.last)

    def edges(self, column: Any) -> ColumnElement[bool]:
        """`column` in the period but outside its whole slots."""
        if not self.whole:
            return and_(column >= self.start, column < self.end)
        return or_(
            and_(column >= self.start, column < self.inner_start),
            and_(column >= self.inner_end, column < self.end),
        )


def split(start: datetime, end: datetime, step: timedelta = SLOT) -> Split:
    """Exact integer arithmetic on microseconds: slot k covers [k*step, (k+1)*step)."""
    size = step // timedelta(microseconds=1)
    low = (start - EPOCH) // timedelta(microseconds=1)
    high = (end - EPOCH) // timedelta(microseconds=1)
    return Split(start, end, -(-low // size), high // size, step)


def _union(parts: list[Any]) -> Any:
    """The live part alone, or with the rollup parts (when the period has whole slots)."""
    return union_all(*parts) if len(parts) > 1 else parts[0]


def _task_column(name: str, step: int) -> ColumnElement[Any]:
    if name == "slot":
        return repository._slot("postgresql", Task.created_at, step).label("slot")
    column: ColumnElement[Any] = getattr(Task, name)
    return column


def _rollup_column(name: str, step: int) -> ColumnElement[Any]:
    if name == "slot":
        # Whole quarter hours; an hour is four of them (slot >= 0: the division floors).
        return (ReportTaskSlot.slot // (step // SLOT_SECONDS)).label("slot")
    column: ColumnElement[Any] = getattr(ReportTaskSlot, name)
    return column


def _incidents_only(filters: ReportFilters) -> bool:
    """False when the type filter excludes incidents (nothing to count)."""
    return filters.task_type in (None, TaskType.INCIDENT)


async def tallies(
    session: AsyncSession,
    names: Sequence[str],
    filters: ReportFilters,
    now: datetime,
    *,
    step: int = SLOT_SECONDS,
    incidents: bool = False,
) -> Sequence[Any]:
    """Rows shaped like `repository._tallied`'s, grouped by `names` (task columns, or
    `slot` in `step` seconds) plus status and priority: the rollup over the whole slots,
    the live rows of the partial ones, minus the tasks of the whole slots whose breach
    instant is still ahead."""
    if incidents and not _incidents_only(filters):
        return []
    window = split(filters.start, filters.end)
    extra = ["status"] + ([] if "priority" in names else ["priority"])
    keys = [*names, *extra]
    live_filters = replace(filters, task_type=TaskType.INCIDENT) if incidents else filters

    edges = repository._tallied(
        [_task_column(n, step) for n in names], live_filters, now, window=False
    ).where(window.edges(Task.created_at))
    parts = [edges]
    if window.whole:
        clauses = [window.slots(ReportTaskSlot.slot)]
        clauses += repository.value_clauses(ReportTaskSlot, filters)
        if live_filters.task_type is not None:
            clauses.append(ReportTaskSlot.task_type == live_filters.task_type)
        rolled = [_rollup_column(n, step) for n in keys]
        parts.append(
            select(
                *rolled,
                cast(func.sum(ReportTaskSlot.tasks), Integer).label("total"),
                cast(func.sum(ReportTaskSlot.completions), Integer).label("with_completion"),
                cast(func.sum(ReportTaskSlot.completion_us), Float).op("/")(1e6),
                cast(func.sum(ReportTaskSlot.breach_known), Integer).label("breached"),
            )
            .where(*clauses)
            .group_by(*rolled)
            # A group whose tasks all moved away is a row of zeros: no group at all.
            .having(func.sum(ReportTaskSlot.tasks) != 0)
        )
        ahead = [_task_column(n, step) for n in keys]
        parts.append(
            select(
                *ahead,
                literal(0),
                literal(0),
                cast(null(), Float),
                (-func.count()).label("breached"),
            )
            .where(
                Task.sla_breach_at > repository._now(now),
                Task.created_at >= window.inner_start,
                Task.created_at < window.inner_end,
                *repository.task_clauses(live_filters, window=False),
            )
            .group_by(*ahead)
        )
    return list((await session.execute(_union(parts))).all())


async def tag_tallies(session: AsyncSession, filters: ReportFilters) -> Sequence[Any]:
    """`repository.tag_tallies` from the tag rollup and the partial slots' incidents."""
    if not _incidents_only(filters):
        return []
    window = split(filters.start, filters.end)
    tags = func.jsonb_array_elements_text(Task.tags).table_valued("value").alias("tag")
    edges = (
        select(
            tags.c.value.label("tag"),
            Task.status,
            func.count().label("count"),
            func.count(Task.completed_at).label("completions"),
            cast(func.sum(repository._completion_seconds()), Float).label("seconds"),
        )
        .select_from(Task)
        .join(tags, true())
        .where(
            window.edges(Task.created_at),
            Task.task_type == TaskType.INCIDENT,
            *repository.task_clauses(filters, window=False),
        )
        .group_by(tags.c.value, Task.status)
    )
    parts: list[Any] = [edges]
    if window.whole:
        parts.append(
            select(
                ReportTagSlot.tag,
                ReportTagSlot.status,
                cast(func.sum(ReportTagSlot.incidents), Integer),
                cast(func.sum(ReportTagSlot.completions), Integer),
                cast(func.sum(ReportTagSlot.completion_us), Float).op("/")(1e6),
            )
            .where(
                window.slots(ReportTagSlot.slot),
                *repository.value_clauses(ReportTagSlot, filters),
            )
            .group_by(ReportTagSlot.tag, ReportTagSlot.status)
        )
    rows = (await session.execute(_union(parts))).all()
    folded: dict[str, TagRow] = {}
    for tag, status, count, completions, seconds in rows:
        row = folded.setdefault(tag, TagRow(tag))
        row.count += int(count)
        if status == TaskStatus.COMPLETED:
            row.completed += int(completions)
            if seconds is not None:
                row.seconds = (row.seconds or 0.0) + float(seconds)
    return [row for row in folded.values() if row.count]


@dataclass
class TagRow:
    tag: str
    count: int = 0
    completed: int = 0
    seconds: float | None = None


async def acknowledgements(session: AsyncSession, filters: ReportFilters) -> Sequence[Any]:
    """`repository.acknowledgements` (quarter-hour slots) from the acknowledgement rollup
    and the partial slots' incidents."""
    if not _incidents_only(filters):
        return []
    window = split(filters.start, filters.end)
    slot = repository._slot("postgresql", Task.acknowledged_at, SLOT_SECONDS).label("slot")
    edges = (
        select(Task.acknowledged_by, slot, func.count().label("count"))
        .where(
            window.edges(Task.acknowledged_at),
            Task.acknowledged_by.is_not(None),
            Task.task_type == TaskType.INCIDENT,
            *repository.task_clauses(filters, window=False),
        )
        .group_by(Task.acknowledged_by, slot)
    )
    parts: list[Any] = [edges]
    if window.whole:
        parts.append(
            select(
                ReportAckSlot.acknowledged_by,
                ReportAckSlot.slot,
                cast(func.sum(ReportAckSlot.incidents), Integer),
            )
            .where(
                window.slots(ReportAckSlot.slot),
                *repository.value_clauses(ReportAckSlot, filters),
            )
            .group_by(ReportAckSlot.acknowledged_by, ReportAckSlot.slot)
            .having(func.sum(ReportAckSlot.incidents) != 0)
        )
    rows = (await session.execute(_union(parts))).all()
    return [(row[0], int(row[1]), int(row[2])) for row in rows]


# --- the rebuild ------------------------------------------------------------------------

_SLOT = "floor(extract(epoch FROM {0}) / 900)::int"
_COMPLETION_US = (
    "COALESCE(((extract(epoch FROM d.completed_at) - extract(epoch FROM d.created_at))"
    " * 1000000)::bigint, 0)"
)
# Each rollup as computed from `tasks` alone: (table, key columns, count columns, query).
ROLLUPS = (
    (
        "report_task_slots",
        "slot, priority, task_type, status, team_id, assigned_to, customer_tier",
        "tasks, completions, completion_us, breach_known",
        f"""SELECT {_SLOT.format("d.created_at")} AS slot, d.priority, d.task_type, d.status,
               d.team_id, d.assigned_to, d.customer_tier, count(*) AS tasks,
               count(d.completed_at) AS completions,
               sum({_COMPLETION_US})::bigint AS completion_us,
               count(d.sla_breach_at) AS breach_known
        FROM tasks AS d GROUP BY 1, 2, 3, 4, 5, 6, 7""",  # noqa: S608
    ),
    (
        "report_tag_slots",
        "slot, tag, priority, status, team_id, customer_tier",
        "incidents, completions, completion_us",
        f"""SELECT {_SLOT.format("d.created_at")} AS slot, t.tag, d.priority, d.status,
               d.team_id, d.customer_tier, count(*) AS incidents,
               count(d.completed_at) AS completions,
               sum({_COMPLETION_US})::bigint AS completion_us
        FROM tasks AS d CROSS JOIN LATERAL jsonb_array_elements_text(
            CASE WHEN jsonb_typeof(d.tags::jsonb) = 'array' THEN d.tags::jsonb ELSE '[]' END
        ) AS t(tag)
        WHERE d.task_type = 'INCIDENT' GROUP BY 1, 2, 3, 4, 5, 6""",  # noqa: S608
    ),
    (
        "report_ack_slots",
        "slot, acknowledged_by, priority, team_id, customer_tier",
        "incidents",
        f"""SELECT {_SLOT.format("d.acknowledged_at")} AS slot, d.acknowledged_by,
               d.priority, d.team_id, d.customer_tier, count(*) AS incidents
        FROM tasks AS d
        WHERE d.task_type = 'INCIDENT' AND d.acknowledged_at IS NOT NULL
          AND d.acknowledged_by IS NOT NULL
        GROUP BY 1, 2, 3, 4, 5""",  # noqa: S608
    ),
)

_DAY = "floor(extract(epoch FROM d.started_at) / 86400)::int"
_HOUR = "floor(extract(epoch FROM d.started_at) / 3600)::int"
_BY_WORK = "(d.cancelled IS false AND d.working_seconds IS NOT NULL)"
_BREACHED = "(d.status = 'BREACHED' OR d.stopped_at > d.deadline)"
_WALL_US = "(extract(epoch FROM (d.stopped_at - d.started_at)) * 1000000)::bigint"
# The rollups of the clocks (migration 0022), as computed from `sla_clocks` alone.
CLOCK_ROLLUPS = (
    (
        "report_clock_hours",
        "hour, calendar, kind",
        "met, breached, cancelled, stopped, wall_us",
        f"""SELECT {_HOUR} AS hour, COALESCE(d.calendar_name, '24x7') AS calendar, d.kind,
               count(*) FILTER (WHERE NOT d.cancelled AND NOT {_BREACHED}) AS met,
               count(*) FILTER (WHERE {_BREACHED}) AS breached,
               count(*) FILTER (WHERE d.cancelled AND NOT {_BREACHED}) AS cancelled,
               count(*) FILTER (WHERE {_BY_WORK}) AS stopped,
               COALESCE(sum({_WALL_US}) FILTER (WHERE {_BY_WORK}), 0)::bigint AS wall_us
        FROM sla_clocks AS d WHERE d.stopped_at IS NOT NULL GROUP BY 1, 2, 3""",  # noqa: S608
    ),
    (
        "report_duration_bins",
        "day, kind, measure, bin",
        "clocks",
        f"""SELECT {_DAY} AS day, d.kind, m.measure, opsflow_duration_bin(m.seconds) AS bin,
               count(*) AS clocks
        FROM sla_clocks AS d
        CROSS JOIN LATERAL (VALUES ('wall', date_part('epoch', d.stopped_at - d.started_at)),
                                   ('working', d.working_seconds)) AS m(measure, seconds)
        WHERE d.stopped_at IS NOT NULL AND {_BY_WORK}
        GROUP BY 1, 2, 3, 4""",  # noqa: S608
    ),
)


# The stopped clocks and the duration histograms per day and the task's values the reports
# filter by, copied on the clocks (migration 0024).
CLOCK_DAY_ROLLUPS = (
    (
        "report_clock_days",
        "day, calendar, kind, task_type, priority, team_id, customer_tier",
        "met, breached, cancelled, wall_us",
        f"""SELECT {_DAY} AS day, COALESCE(d.calendar_name, '24x7') AS calendar, d.kind,
               d.task_type, d.priority, d.team_id, d.customer_tier,
               count(*) FILTER (WHERE NOT d.cancelled AND NOT {_BREACHED}) AS met,
               count(*) FILTER (WHERE {_BREACHED}) AS breached,
               count(*) FILTER (WHERE d.cancelled AND NOT {_BREACHED}) AS cancelled,
               COALESCE(sum({_WALL_US}) FILTER (WHERE {_BY_WORK}), 0)::bigint AS wall_us
        FROM sla_clocks AS d WHERE d.stopped_at IS NOT NULL
        GROUP BY 1, 2, 3, 4, 5, 6, 7""",  # noqa: S608
    ),
    (
        "report_duration_groups",
        "day, kind, measure, bin, task_type, priority, team_id, customer_tier",
        "clocks",
        f"""SELECT {_DAY} AS day, d.kind, m.measure, opsflow_duration_bin(m.seconds) AS bin,
               d.task_type, d.priority, d.team_id, d.customer_tier, count(*) AS clocks
        FROM sla_clocks AS d
        CROSS JOIN LATERAL (VALUES ('wall', date_part('epoch', d.stopped_at - d.started_at)),
                                   ('working', d.working_seconds)) AS m(measure, seconds)
        WHERE d.stopped_at IS NOT NULL AND {_BY_WORK}
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8""",  # noqa: S608
    ),
)
_TASK_VALUES = ("task_type", "priority", "team_id", "customer_tier")
# The clocks whose copy of their task's values differs from the task's, set right.
CLOCK_VALUES = f"""
UPDATE sla_clocks AS c SET {", ".join(f"{v} = t.{v}" for v in _TASK_VALUES)}
FROM tasks AS t
WHERE t.id = c.task_id
  AND ({", ".join(f"c.{v}" for v in _TASK_VALUES)})
      IS DISTINCT FROM ({", ".join(f"t.{v}" for v in _TASK_VALUES)})
"""  # noqa: S608


def _fill(rollups: Sequence[tuple[str, str, str, str]]) -> tuple[str, ...]:
    """Replace every rollup by its value computed from the rows."""
    return tuple(
        statement
        for table, keys, counts, query in rollups
        for statement in (
            f"DELETE FROM {table}",  # noqa: S608
            f"INSERT INTO {table} ({keys}, {counts}) {query}",
        )
    )


FILL = _fill(ROLLUPS)
CLOCK_FILL = _fill(CLOCK_ROLLUPS)
CLOCK_DAY_FILL = _fill(CLOCK_DAY_ROLLUPS)


def _stale(table: str, keys: str, counts: str, query: str) -> str:
    """Groups where the stored rollup and the recomputed one differ: missing or with other
    sums (rows of the recomputed one not stored as they are), or left over (stored keys the
    recomputed one lacks; a group summing to zeros is no group). A group's shards are
    summed first."""
    names = counts.split(", ")
    sums = ", ".join(f"CAST(sum({name}) AS BIGINT) AS {name}" for name in names)
    nonzero = " OR ".join(f"sum({name}) <> 0" for name in names)
    return f"""
    WITH fresh AS MATERIALIZED ({query}),
         stored AS MATERIALIZED (SELECT {keys}, {sums} FROM {table} GROUP BY {keys}
                                 HAVING {nonzero})
    SELECT (SELECT count(*) FROM (SELECT * FROM fresh EXCEPT ALL SELECT * FROM stored) a)
         + (SELECT count(*) FROM (SELECT {keys} FROM stored EXCEPT ALL
                                  SELECT {keys} FROM fresh) b)
    """  # noqa: S608


async def rebuild(session: AsyncSession) -> int:
    """Recompute the rollups from the tasks and clocks; returns how many groups were wrong
    (stored with other sums, missing, or left over) plus how many clocks had other values
    of their task than the task's. PostgreSQL only."""
    # The clocks' copies of their task's values first (their trigger moves the rollups).
    result = await session.execute(text(CLOCK_VALUES))
    stale = int(getattr(result, "rowcount", 0) or 0)
    for table, keys, counts, query in ROLLUPS + CLOCK_ROLLUPS + CLOCK_DAY_ROLLUPS:
        wrong = int((await session.execute(text(_stale(table, keys, counts, query)))).scalar_one())
        if wrong:
            await session.execute(text(f"DELETE FROM {table}"))  # noqa: S608
            await session.execute(text(f"INSERT INTO {table} ({keys}, {counts}) {query}"))
        stale += wrong
    return stale


# Off: every report reads the tasks and clocks as the live path does (the reference the
# property tests compare the fast path with).
_USE = ContextVar("reports_use_rollups", default=True)


def enabled(session: AsyncSession) -> bool:
    """The fast path: on PostgreSQL (where the triggers keep the rollups), unless turned off
    by `live_only`."""
    return _USE.get() and session.get_bind().dialect.name == "postgresql"


@contextmanager
def live_only() -> Iterator[None]:
    """Reports computed inside read the rows only, never the rollups."""
    token = _USE.set(False)
    try:
        yield
    finally:
        _USE.reset(token)
