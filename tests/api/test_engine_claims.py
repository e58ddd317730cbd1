"""The claim every engine pass makes (`db.claim_due`), and `db.insert_rows`."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.context import AppContext
from opsflow.db import claim_due, insert_rows, unit_of_work
from opsflow.events import outbox
from opsflow.models.outbox import OutboxEvent
from tests.conftest import T0


async def _queue(
    ctx: AppContext, minutes: list[int], *, published: bool = False
) -> list[uuid.UUID]:
    """Outbox events available `minutes` from T0 (negative: due), inserted in one statement."""
    rows = [
        outbox.event_row(
            aggregate_type="task",
            aggregate_id=uuid.uuid4(),
            event_type="task.created",
            payload={"at": T0 + timedelta(minutes=m), "minutes": m},
            now=T0 + timedelta(minutes=m),
        )
        for m in minutes
    ]
    for row in rows:
        row["published_at"] = T0 if published else None
    async with unit_of_work(ctx.sessions) as session:
        await insert_rows(session, OutboxEvent, rows)
    return [row["id"] for row in rows]


async def _due(session: AsyncSession, limit: int) -> list[OutboxEvent]:
    return await claim_due(
        session,
        OutboxEvent,
        OutboxEvent.available_at,
        T0,
        limit,
        where=[OutboxEvent.published_at.is_(None)],
    )


async def test_claim_due_takes_the_most_overdue_matching_rows_up_to_the_limit(
    app_context: AppContext,
) -> None:
    ids = await _queue(app_context, [-1, -5, -3, 2, 0])
    await _queue(app_context, [-10], published=True)  # due, but filtered out by `where`
    async with unit_of_work(app_context.sessions) as session:
        claimed = await _due(session, 3)
        everything = await _due(session, 100)
    assert [row.id for row in claimed] == [ids[1], ids[2], ids[0]]  # -5, -3, -1
    assert [row.id for row in everything] == [ids[1], ids[2], ids[0], ids[4]]  # now is due
    # The rows went in with one statement and read back as the ORM writes them.
    async with app_context.sessions() as session:
        row = await session.scalar(select(OutboxEvent).where(OutboxEvent.id == ids[1]))
    assert row is not None
    assert row.payload == {"at": "2026-01-27T10:25:00Z", "minutes": -5, "request_id": None}
    assert row.attempts == 0


async def test_claim_due_skips_rows_another_unit_of_work_holds_on_postgresql(
    app_context: AppContext,
) -> None:
    ids = await _queue(app_context, [-4, -3, -2, -1])
    if app_context.engine.dialect.name != "postgresql":
        return  # SQLite serialises writers: a second claim waits for the first to commit
    async with unit_of_work(app_context.sessions) as first:
        held = await _due(first, 2)
        async with unit_of_work(app_context.sessions) as second:
            # Without SKIP LOCKED this claim would wait for `first`: fail instead of hanging.
            await second.execute(text("SET LOCAL lock_timeout = '5s'"))
            other = await _due(second, 10)
    assert [row.id for row in held] == ids[:2]
    assert [row.id for row in other] == ids[2:]


async def test_insert_rows_keeps_order_defaults_json_and_refuses_what_a_column_refuses(
    app_context: AppContext,
) -> None:
    """Rows go in as given (their order, their JSON values, the model's Python defaults for
    keys they lack); a value longer than its column is refused on both databases (on
    PostgreSQL the rows' arrays are not of the column's length, which would cut it)."""
    from sqlalchemy.exc import DBAPIError, StatementError

    rows = [
        outbox.event_row(
            aggregate_type="task",
            aggregate_id=uuid.uuid4(),
            event_type="task.created",
            payload={"minutes": m, "nested": [{"at": None}]},
            now=T0,
        )
        for m in (3, 1, 2)
    ]
    for row in rows:
        del row["attempts"]  # left to the model's default
    async with unit_of_work(app_context.sessions) as session:
        await insert_rows(session, OutboxEvent, rows)
    ids = [row["id"] for row in rows]
    async with app_context.sessions() as session:
        found = (await session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(ids)))).all()
        by_id = {row.id: row for row in found}
    assert [(by_id[i].payload["minutes"], by_id[i].payload["nested"]) for i in ids] == [
        (m, [{"at": None}]) for m in (3, 1, 2)
    ]
    assert all(by_id[i].attempts == 0 for i in ids)
    long_row = outbox.event_row(
        aggregate_type="t" * 65,  # VARCHAR(64)
        aggregate_id=uuid.uuid4(),
        event_type="task.created",
        payload={},
        now=T0,
    )
    try:
        async with unit_of_work(app_context.sessions) as session:
            await insert_rows(session, OutboxEvent, [long_row])
        refused = False
    except (DBAPIError, StatementError):
        refused = True
    if app_context.engine.dialect.name == "postgresql":
        assert refused
    async with app_context.sessions() as session:
        kept = await session.scalar(select(OutboxEvent).where(OutboxEvent.id == long_row["id"]))
    assert kept is None or len(kept.aggregate_type) == 65  # never cut
