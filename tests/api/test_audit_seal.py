"""Audit rows take their place in the hash chain as their transaction commits.

On PostgreSQL the database seals them (migration 0025: a deferred trigger under the chain's
advisory lock), on SQLite the writer chains them before the insert. Either way the chain
that the Python verifier walks has no gap (a rolled-back unit of work takes no place), keeps
the rows of one unit of work in the order they were recorded, and hashes exactly the
content the verifier recomputes, awkward values included. On PostgreSQL the lock is taken
only at COMMIT, so a writer does not wait for another that has written its audit rows but
not committed yet.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from opsflow.audit import service
from opsflow.audit import writer as audit
from opsflow.audit.chain import GENESIS_HASH
from opsflow.auth.principal import Principal, RequestMeta
from opsflow.context import AppContext
from opsflow.db import insert_rows, unit_of_work
from opsflow.models.audit import AuditLog
from tests.conftest import T0

AWKWARD: dict[str, Any] = {
    "seq": 7,
    "note": 'é ✓ 日本 \x01 "quoted" ,"seq":1, back\\slash\nline',
    "ratio": 1.5,
    "nothing": None,
    "nested": {"z": [1, "two", None, {"a": True}], "a": False},
}


def _record(session: Any, label: str, **extra: Any) -> None:
    audit.record(
        session,
        Principal.system(
            "seal-test", RequestMeta(ip_address=None, user_agent="agent ✓", request_id=label)
        ),
        entity_type="task",
        entity_id=uuid.uuid4(),
        action="TASK_UPDATED",
        now=T0,
        metadata={"label": label, **extra},
    )


async def _chain(ctx: AppContext) -> list[AuditLog]:
    async with ctx.sessions() as session:
        rows = list((await session.scalars(select(AuditLog).order_by(AuditLog.seq))).all())
        verification = await service.verify(session, T0)
    assert verification.valid, verification
    assert [row.seq for row in rows] == list(range(1, len(rows) + 1))
    assert all(row.pending_content is None for row in rows)
    return rows


async def test_rows_of_one_unit_of_work_keep_their_order_and_awkward_content_verifies(
    app_context: AppContext,
) -> None:
    async with unit_of_work(app_context.sessions) as session:
        for index in range(5):
            _record(session, f"first-{index}", awkward=AWKWARD)
    async with unit_of_work(app_context.sessions) as session:
        _record(session, "second", awkward=AWKWARD, previous=None)
    rows = await _chain(app_context)
    labels = [row.metadata_["label"] for row in rows]
    assert labels == [*(f"first-{index}" for index in range(5)), "second"]
    assert rows[0].metadata_["awkward"] == AWKWARD


async def test_a_bulk_unit_of_work_between_small_ones_keeps_the_order(
    app_context: AppContext,
) -> None:
    """Many rows in one unit of work are chained by the writer under the lock (PostgreSQL),
    a few are sealed by the database at commit: one chain either way."""
    async with unit_of_work(app_context.sessions) as session:
        _record(session, "small-1")
    async with unit_of_work(app_context.sessions) as session:
        for index in range(audit.BULK_ROWS + 3):
            _record(session, f"bulk-{index}", awkward=AWKWARD)
    async with unit_of_work(app_context.sessions) as session:
        _record(session, "small-2")
    rows = await _chain(app_context)
    bulk = [f"bulk-{index}" for index in range(audit.BULK_ROWS + 3)]
    assert [row.metadata_["label"] for row in rows] == ["small-1", *bulk, "small-2"]


async def test_a_rolled_back_unit_of_work_leaves_no_gap(app_context: AppContext) -> None:
    async with unit_of_work(app_context.sessions) as session:
        _record(session, "kept-1")

    async def written_then_rolled_back() -> None:
        async with unit_of_work(app_context.sessions) as session:
            _record(session, "dropped-1")
            _record(session, "dropped-2")
            await audit.flush_pending(session)
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        await written_then_rolled_back()
    async with unit_of_work(app_context.sessions) as session:
        _record(session, "kept-2")
    rows = await _chain(app_context)
    assert [row.metadata_["label"] for row in rows] == ["kept-1", "kept-2"]


async def test_a_burst_of_concurrent_creates_chains_without_gaps(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_context: AppContext
) -> None:
    async def create(number: int) -> None:
        answer = await client.post(
            "/tasks",
            json={"title": f"burst {number}", "task_type": "INCIDENT", "priority": "HIGH"},
            headers=admin_headers,
        )
        assert answer.status_code == 201, answer.text

    before = len(await _chain(app_context))
    await asyncio.gather(*(create(number) for number in range(40)))
    rows = await _chain(app_context)
    created = [row for row in rows if row.action == "TASK_CREATED"]
    assert len(created) == 40
    assert len(rows) >= before + 40


@pytest.mark.postgres
async def test_a_writer_does_not_wait_for_uncommitted_audit_rows(app_context: AppContext) -> None:
    """The chain's lock is taken at COMMIT: a writer whose audit rows are inserted but not
    committed holds nothing that another writer needs. (When the lock was taken to insert
    them, the second writer waited for the first one's COMMIT and ran out of lock_timeout.)"""
    async with unit_of_work(app_context.sessions) as first:
        _record(first, "inserted-first")
        await audit.flush_pending(first)
        async with unit_of_work(app_context.sessions) as second:
            await second.execute(text("SET LOCAL lock_timeout = '2s'"))
            _record(second, "committed-first")
        # The first writer is still open: its rows wait for their place.
        pending = (
            await first.scalars(select(AuditLog.seq).where(AuditLog.pending_content.is_not(None)))
        ).all()
        assert list(pending) == [None]
    rows = await _chain(app_context)
    assert [row.metadata_["label"] for row in rows] == ["committed-first", "inserted-first"]


@pytest.mark.postgres
async def test_the_seal_refuses_a_row_without_content(app_context: AppContext) -> None:

    async def insert_without_content() -> None:
        async with unit_of_work(app_context.sessions) as session:
            _record(session, "stripped")
            row = audit.unsealed_rows(session.info.pop("audit_pending"))[0]
            row["pending_content"] = None
            await insert_rows(session, AuditLog, [row])

    with pytest.raises(DBAPIError, match="no content to seal"):
        await insert_without_content()
    assert await _chain(app_context) == []


@pytest.mark.postgres
async def test_the_seal_refuses_a_snapshot_isolation_level(app_context: AppContext) -> None:
    """Under REPEATABLE READ the head would be read from the transaction's snapshot, older
    than the previous holder's commit."""

    async def write_in_repeatable_read() -> None:
        async with unit_of_work(app_context.sessions) as session:
            await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            _record(session, "snapshot")

    with pytest.raises(DBAPIError, match="READ COMMITTED"):
        await write_in_repeatable_read()
    assert await _chain(app_context) == []


@pytest.mark.postgres
async def test_a_writer_of_the_previous_version_interleaves_correctly(
    app_context: AppContext,
) -> None:
    """During a rolling deploy an older process takes the lock and reads the head itself
    (`opsflow_audit_chain_head`), then inserts rows already chained: the seal leaves them
    alone and chains its own rows after them."""
    async with unit_of_work(app_context.sessions) as sealed_later:
        _record(sealed_later, "sealed-at-commit")
        await audit.flush_pending(sealed_later)
        async with unit_of_work(app_context.sessions) as older:
            head = (
                await older.execute(
                    text("SELECT seq, hash FROM opsflow_audit_chain_head(:key)"),
                    {"key": audit.CHAIN_LOCK_KEY},
                )
            ).first()
            assert head is None  # an empty chain
            _record(older, "chained-by-older")
            pending = older.info.pop("audit_pending")
            await insert_rows(older, AuditLog, audit.chain(pending, 0, GENESIS_HASH))
    rows = await _chain(app_context)
    assert [row.metadata_["label"] for row in rows] == ["chained-by-older", "sealed-at-commit"]
