"""Writing audit rows: buffered during the unit of work, inserted at commit, chained by
whoever can do it without holding up the other writers.

Appending to the chain needs the newest row's hash, so appends are serialised. On PostgreSQL
the rows of a unit of work are inserted by a pre-commit hook without their place in the chain
(`seq`, `prev_hash` and `hash` NULL; the canonical JSON of their content around the value of
"seq" in `pending_content`); a deferred constraint trigger (migration 0025) seals them when
the transaction commits: it takes the chain's transaction-scoped advisory lock, reads the
head and computes each row's place and hash in the database. The lock is held from the
trigger to the end of COMMIT, with no round trip to a client under it, so writers queue on
it for microseconds instead of for three round trips through busy event loops. A
transaction that rolls back never seals, so it leaves no gap. A unit of work with many rows
(`BULK_ROWS`) chains them here instead, under the same lock, taken just before its insert.
SQLite serialises writers itself: its rows are chained here, after reading the head, and
inserted sealed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.audit.chain import GENESIS_HASH, HASHED_FIELDS, chain_hash, unsealed
from opsflow.auth.principal import Principal
from opsflow.db import add_pre_commit_hook, insert_rows
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.audit import AuditLog

# Any constant, shared by every OpsFlow process and by the seal of migration 0025.
CHAIN_LOCK_KEY = 0x0F5F10A0D17
_PENDING = "audit_pending"


@dataclass(frozen=True)
class Pending:
    entity_type: str
    entity_id: uuid.UUID
    action: str
    actor: Principal
    timestamp: datetime
    changes: Any
    previous_state: Any
    new_state: Any
    metadata: Any


def record(
    session: AsyncSession,
    actor: Principal,
    *,
    entity_type: str,
    entity_id: uuid.UUID,
    action: str,
    now: datetime,
    changes: dict[str, Any] | None = None,
    previous_state: dict[str, Any] | None = None,
    new_state: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    plain: bool = False,
) -> None:
    """Queue one audit row; it is written in this unit of work, just before commit.

    `plain`: the states and changes are plain JSON values already (what `to_jsonable`
    makes of them, e.g. `tasks.values.task_state`), built for this row and not changed
    after: kept as given instead of copied by another walk."""
    convert = _as_given if plain else to_jsonable
    pending: list[Pending] = session.info.setdefault(_PENDING, [])
    pending.append(
        Pending(
            entity_type=entity_type,
            entity_id=entity_id,
            action=action,
            actor=actor,
            timestamp=now,
            changes=convert(changes) if changes is not None else None,
            previous_state=convert(previous_state) if previous_state is not None else None,
            new_state=convert(new_state) if new_state is not None else None,
            metadata=to_jsonable(metadata or {}),
        )
    )
    add_pre_commit_hook(session, "audit", _flush_hook)


def _as_given(value: Any) -> Any:
    return value


async def _flush_hook(session: AsyncSession) -> None:
    await flush_pending(session)


# From this many rows in one unit of work (an SLA engine's pass, a batch), the rows are
# chained here after taking the lock and reading the head in one round trip (migration
# 0020's function, kept by 0025): the lock is then held across the insert and the COMMIT of
# that one transaction, and the database is spared a trigger call, a head read and an update
# per row (measured: 40-60 µs of database time per row more than an insert of chained rows).
BULK_ROWS = 50
_UNSEALED = "audit_unsealed"
_LOCKED_HEAD = text("SELECT seq, hash FROM opsflow_audit_chain_head(:key)")

# The chain's head (SQLite, whose writers are serialised): built once.
_HEAD = (
    select(AuditLog.seq, AuditLog.hash)
    .where(AuditLog.seq.is_not(None))
    .order_by(AuditLog.seq.desc())
    .limit(1)
)


async def flush_pending(session: AsyncSession) -> int:
    """Insert the queued rows (one statement for all of them), chained here on SQLite and
    left for the database to seal at commit on PostgreSQL; how many."""
    pending: list[Pending] = session.info.pop(_PENDING, [])
    if not pending:
        return 0
    # A plain multi-row insert: no ORM object per row (nothing reads them back in this
    # unit of work).
    if session.get_bind().dialect.name != "postgresql":
        last = (await session.execute(_HEAD)).first()
        seq, prev_hash = (last[0], last[1]) if last else (0, GENESIS_HASH)
        await insert_rows(session, AuditLog, chain(pending, seq, prev_hash))
    elif len(pending) < BULK_ROWS or session.info.get(_UNSEALED):
        session.info[_UNSEALED] = True  # later rows of this unit of work stay behind them
        await insert_rows(session, AuditLog, unsealed_rows(pending))
    else:
        # Everything else this unit of work changed is written first, so the lock is held
        # only for the audit insert and the commit.
        await session.flush()
        last = (await session.execute(_LOCKED_HEAD, {"key": CHAIN_LOCK_KEY})).first()
        seq, prev_hash = (last[0], last[1]) if last else (0, GENESIS_HASH)
        await insert_rows(session, AuditLog, chain(pending, seq, prev_hash))
    return len(pending)


def take_pending(session: AsyncSession) -> list[Pending]:
    """The audit rows queued in this session, removed from it (for a caller that chains and
    writes them itself: the demo data loader)."""
    pending: list[Pending] = session.info.pop(_PENDING, [])
    return pending


def chain(pending: list[Pending], seq: int, prev_hash: str) -> list[dict[str, Any]]:
    """Queued rows as the column values (by attribute name) of audit rows appended after
    the row (`seq`, `prev_hash`), hashes included (pure)."""
    rows: list[dict[str, Any]] = []
    for item in pending:
        seq += 1
        values = _values(item)
        values["seq"] = seq
        values["prev_hash"] = prev_hash
        values["hash"] = prev_hash = chain_hash(prev_hash, content(values))
        rows.append(values)
    return rows


def unsealed_rows(pending: list[Pending]) -> list[dict[str, Any]]:
    """Queued rows as the column values of audit rows for the database to seal: no place
    in the chain yet, their hashed content as `chain.unsealed` text (pure)."""
    rows: list[dict[str, Any]] = []
    for item in pending:
        values = _values(item)
        values["seq"] = values["prev_hash"] = values["hash"] = None
        values["pending_content"] = unsealed(content(values))
        rows.append(values)
    return rows


def _values(item: Pending) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "entity_type": item.entity_type,
        "entity_id": item.entity_id,
        "action": item.action,
        "actor_type": item.actor.actor_type.value,
        "actor_id": item.actor.id,
        "actor_name": item.actor.name,
        "previous_state": item.previous_state,
        "new_state": item.new_state,
        "changes": item.changes,
        "ip_address": item.actor.meta.ip_address,
        "user_agent": item.actor.meta.user_agent,
        "request_id": item.actor.meta.request_id,
        "timestamp": item.timestamp,
        "metadata_": item.metadata,
    }


# The hashed fields as attributes of the model (its `metadata` column is `metadata_`).
_CONTENT_ATTRIBUTES = tuple("metadata_" if f == "metadata" else f for f in HASHED_FIELDS)


def row_content(row: AuditLog) -> dict[str, Any]:
    """The hashed content of a row, in the same JSON form whether fresh or read back."""
    return content({name: getattr(row, name) for name in _CONTENT_ATTRIBUTES})


def content(values: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed content of an audit row given as its values by attribute name."""
    return {
        "seq": values["seq"],
        "id": str(values["id"]),
        "entity_type": values["entity_type"],
        "entity_id": str(values["entity_id"]),
        "action": values["action"],
        "actor_type": values["actor_type"],
        "actor_id": str(values["actor_id"]) if values["actor_id"] else None,
        "actor_name": values["actor_name"],
        "previous_state": values["previous_state"],
        "new_state": values["new_state"],
        "changes": values["changes"],
        "ip_address": values["ip_address"],
        "user_agent": values["user_agent"],
        "request_id": values["request_id"],
        "timestamp": to_jsonable(values["timestamp"]),
        "metadata": values["metadata_"],
    }
