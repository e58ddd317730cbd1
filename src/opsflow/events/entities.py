"""Configuration entities changed as a whole, every change audited.

Webhook subscriptions, maintenance windows and escalation policies share one life cycle:
load or 404, an optional unique name, create, update, delete, each change recorded by
`record_entity_change` with the entity's state before and after (what the audit log keeps
of a row, never a secret). `Entity` is that life cycle once; each service describes its
entity and keeps only what is its own (defaults, checks across fields).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.principal import Principal
from opsflow.errors import Conflict, NotFound
from opsflow.events.changes import record_entity_change


class _Row(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    updated_at: datetime


Row = TypeVar("Row", bound=_Row)


@dataclass(frozen=True)
class Entity(Generic[Row]):
    """An audited configuration entity: `name` in audit rows, events and 404s; `state` is
    what the audit log keeps of a row; `named` finds a row by its unique name, and `title`
    (with its article) names the entity in the conflict message."""

    name: str
    model: type[Row]
    state: Callable[[Row], dict[str, Any]]
    title: str = ""
    named: Callable[[AsyncSession, str], Awaitable[object]] | None = None

    async def get(self, session: AsyncSession, row_id: uuid.UUID) -> Row:
        row = await session.get(self.model, row_id)
        if row is None:
            raise NotFound(self.name, row_id)
        return row

    async def check_name(
        self, session: AsyncSession, name: str, current: str | None = None
    ) -> None:
        """409 when another row already has this name."""
        if self.named is not None and name != current and await self.named(session, name):
            raise Conflict(f"{self.title} named '{name}' already exists")

    async def create(self, session: AsyncSession, actor: Principal, row: Row, now: datetime) -> Row:
        session.add(row)
        await session.flush()
        record_entity_change(
            session, actor, self.name, row.id, "CREATED", now, None, self.state(row)
        )
        return row

    def updated(
        self,
        session: AsyncSession,
        actor: Principal,
        row: Row,
        before: dict[str, Any],
        now: datetime,
        *,
        also_changed: bool = False,
        note: dict[str, Any] | None = None,
    ) -> None:
        """After the caller changed `row` from the `before` state: audited, with a new
        `updated_at`, when its state differs (or `also_changed`, for what the state leaves
        out); `note` adds to the recorded new state."""
        after = self.state(row)
        if after == before and not also_changed:
            return
        row.updated_at = now
        new = after | (note or {})
        record_entity_change(session, actor, self.name, row.id, "UPDATED", now, before, new)

    async def delete(
        self, session: AsyncSession, actor: Principal, row_id: uuid.UUID, now: datetime
    ) -> None:
        row = await self.get(session, row_id)
        record_entity_change(
            session, actor, self.name, row.id, "DELETED", now, self.state(row), None
        )
        await session.delete(row)
