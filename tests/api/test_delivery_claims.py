"""The delivery engine's claim (one ``UPDATE … RETURNING`` that takes and leases due rows)
and its record (one executemany UPDATE by id, written only while the lease is ours)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text, update

from opsflow.context import AppContext
from opsflow.db import insert_rows, unit_of_work
from opsflow.models.notification import Notification
from opsflow.notifications import repository
from tests.conftest import T0

LEASE = T0 + timedelta(minutes=5)


async def _queue(ctx: AppContext, minutes: list[int], status: str = "PENDING") -> list[uuid.UUID]:
    """Webhook notifications due `minutes` from T0 (negative: overdue), in one statement."""
    rows: list[dict[str, Any]] = [
        {
            "id": uuid.uuid4(),
            "source_event_id": uuid.uuid4(),
            "notification_type": "task.created",
            "channel": "WEBHOOK",
            "recipient": "hook",
            "address": "http://127.0.0.1:9/hook",
            "body": "",
            "payload": {},
            "status": status,
            "attempts": 0,
            "max_attempts": 3,
            "attempt_log": [],
            "scheduled_at": T0 + timedelta(minutes=m),
            "dedup_key": f"claim-test-{uuid.uuid4()}",
            "created_at": T0,
            "updated_at": T0,
        }
        for m in minutes
    ]
    async with unit_of_work(ctx.sessions) as session:
        await insert_rows(session, Notification, rows)
    return [row["id"] for row in rows]


async def _scheduled(ctx: AppContext) -> dict[uuid.UUID, object]:
    async with ctx.sessions() as session:
        rows = await session.execute(select(Notification.id, Notification.scheduled_at))
        return {row_id: at for row_id, at in rows.all()}


async def test_the_claim_takes_the_most_overdue_deliverable_rows_and_leases_them(
    app_context: AppContext,
) -> None:
    ids = await _queue(app_context, [-1, -5, -3, 2, 0])
    await _queue(app_context, [-10], status="SENT")  # due, but not deliverable
    async with unit_of_work(app_context.sessions) as session:
        claimed = await repository.claim_and_lease(session, T0, 3, LEASE)
    assert {row.id for row in claimed} == {ids[1], ids[2], ids[0]}  # -5, -3, -1
    assert all(row.scheduled_at == LEASE for row in claimed)
    scheduled = await _scheduled(app_context)
    assert [scheduled[i] for i in ids] == [LEASE, LEASE, LEASE, T0 + timedelta(minutes=2), T0]
    # Leased rows are no longer due: the next claim takes what is left.
    async with unit_of_work(app_context.sessions) as session:
        rest = await repository.claim_and_lease(session, T0, 10, LEASE)
    assert [row.id for row in rest] == [ids[4]]


async def test_an_outcome_is_recorded_only_while_the_lease_is_ours(
    app_context: AppContext,
) -> None:
    kept, lost = await _queue(app_context, [-2, -1])
    async with unit_of_work(app_context.sessions) as session:
        await repository.claim_and_lease(session, T0, 10, LEASE)
    later = LEASE + timedelta(minutes=5)
    async with unit_of_work(app_context.sessions) as session:  # the lease ran out: taken over
        await session.execute(
            update(Notification).where(Notification.id == lost).values(scheduled_at=later)
        )
    outcome = {
        "lease": LEASE, "status": "SENT", "attempts": 1, "attempt_log": [{"ok": True}],
        "scheduled_at": LEASE, "sent_at": T0, "failed_at": None, "error_message": None,
        "updated_at": T0,
    }  # fmt: skip
    async with unit_of_work(app_context.sessions) as session:
        assert await repository.still_leased(session, [kept, lost], LEASE) == {kept}
        await repository.record_many(session, [{"id": kept, **outcome}, {"id": lost, **outcome}])
    async with app_context.sessions() as session:
        rows = {n.id: n for n in await session.scalars(select(Notification))}
    assert (rows[kept].status, rows[kept].attempts, rows[kept].sent_at) == ("SENT", 1, T0)
    assert rows[kept].attempt_log == [{"ok": True}]
    assert (rows[lost].status, rows[lost].attempts, rows[lost].scheduled_at) == (
        "PENDING",
        0,
        later,
    )


async def test_two_engines_never_claim_the_same_row_on_postgresql(
    app_context: AppContext,
) -> None:
    ids = await _queue(app_context, list(range(-40, 0)))
    if app_context.engine.dialect.name != "postgresql":
        return  # SQLite serialises writers: a second claim waits for the first to commit
    async with unit_of_work(app_context.sessions) as first:
        held = await repository.claim_and_lease(first, T0, 5, LEASE)
        async with unit_of_work(app_context.sessions) as second:
            # Without SKIP LOCKED this claim would wait for `first`: fail instead of hanging.
            await second.execute(text("SET LOCAL lock_timeout = '5s'"))
            other = await repository.claim_and_lease(second, T0, 5, LEASE)
    assert {row.id for row in held} == set(ids[:5])
    assert {row.id for row in other} == set(ids[5:10])

    async def engine() -> list[uuid.UUID]:
        async with unit_of_work(app_context.sessions) as session:
            await session.execute(text("SET LOCAL lock_timeout = '5s'"))
            return [row.id for row in await repository.claim_and_lease(session, T0, 4, LEASE)]

    # Claims racing on their own connections: whatever each takes, no row is taken twice.
    taken = [
        row_id for claim in await asyncio.gather(*(engine() for _ in range(6))) for row_id in claim
    ]
    async with unit_of_work(app_context.sessions) as session:
        taken += [row.id for row in await repository.claim_and_lease(session, T0, 100, LEASE)]
    assert sorted(taken) == sorted(ids[10:])
