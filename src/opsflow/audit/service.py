"""Reading the audit trail: listing, streamed export, chain verification."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from opsflow.audit import repository
from opsflow.audit.chain import GENESIS_HASH, chain_hash
from opsflow.audit.repository import AuditFilters
from opsflow.audit.schemas import AuditActor, AuditLogRead, ChainVerification
from opsflow.audit.writer import row_content
from opsflow.models.audit import AuditLog

CSV_COLUMNS = (
    "seq",
    "id",
    "timestamp",
    "entity_type",
    "entity_id",
    "action",
    "actor_type",
    "actor_id",
    "actor_name",
    "changes",
    "ip_address",
    "user_agent",
    "request_id",
    "prev_hash",
    "hash",
)


def to_read(row: AuditLog) -> AuditLogRead:
    return AuditLogRead(
        id=row.id,
        seq=row.seq,
        entity_type=row.entity_type,
        entity_id=row.entity_id,
        action=row.action,
        actor_type=row.actor_type,
        actor=AuditActor(id=row.actor_id, username=row.actor_name),
        changes=row.changes,
        previous_state=row.previous_state,
        new_state=row.new_state,
        metadata=row.metadata_ or {},
        timestamp=row.timestamp,
        ip_address=row.ip_address,
        user_agent=row.user_agent,
        request_id=row.request_id,
        hash=row.hash,
        prev_hash=row.prev_hash,
    )


def _csv_safe(value: Any) -> Any:
    # Spreadsheet formula injection: a cell starting with = + - @ is neutralised.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


async def export(
    sessions: async_sessionmaker[AsyncSession], filters: AuditFilters, fmt: str
) -> AsyncIterator[bytes]:
    """Stream the matching rows in chain order; memory stays flat however many there are.

    The export reads in its own session because the response body is produced after the
    request's unit of work has ended.
    """
    async with sessions() as session:
        if fmt == "json":
            # Nothing is sent before the first query has answered (see start_export).
            opening = b"["
            separator = b""
            async for batch in repository.stream(session, filters):
                chunk = [opening]
                opening = b""
                for row in batch:
                    chunk.append(separator + to_read(row).model_dump_json().encode())
                    separator = b","
                yield b"".join(chunk)
            yield opening + b"]"
            return
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        async for batch in repository.stream(session, filters):
            for row in batch:
                content = row_content(row)
                writer.writerow(
                    _csv_safe(
                        json.dumps(content["changes"], sort_keys=True)
                        if name == "changes"
                        else content.get(name, getattr(row, name, None))
                    )
                    for name in CSV_COLUMNS
                )
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue().encode()


async def start_export(
    sessions: async_sessionmaker[AsyncSession], filters: AuditFilters, fmt: str
) -> AsyncIterator[bytes]:
    """The export, started: its first query has run and its first bytes are ready, so a
    problem is answered as an error instead of a 200 whose download stops half-way."""
    stream = export(sessions, filters, fmt)
    first = await anext(stream)

    async def chained() -> AsyncIterator[bytes]:
        yield first
        async for chunk in stream:
            yield chunk

    return chained()


async def verify(session: AsyncSession, now: datetime) -> ChainVerification:
    """Walk the whole chain in order, recomputing every hash and link."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    head: AuditLog | None = None
    async for batch in repository.stream(session):
        for row in batch:
            reason = None
            if row.seq != expected_seq:
                reason = f"sequence gap: expected {expected_seq}, found {row.seq} (rows removed)"
            elif row.prev_hash != expected_prev:
                reason = "prev_hash does not match the previous row's hash"
            elif chain_hash(row.prev_hash, row_content(row)) != row.hash:
                reason = "content does not match its hash (row modified)"
            if reason:
                return ChainVerification(
                    valid=False,
                    checked=checked,
                    head_seq=row.seq,
                    head_hash=row.hash,
                    first_invalid_seq=row.seq,
                    reason=reason,
                    verified_at=now,
                )
            checked += 1
            expected_prev = row.hash
            expected_seq += 1
            head = row
    return ChainVerification(
        valid=True,
        checked=checked,
        head_seq=head.seq if head else None,
        head_hash=head.hash if head else None,
        verified_at=now,
    )


# Reads with no rule beyond their query: the repository's functions, as this service's API
# (endpoints call services only).
search = repository.search
