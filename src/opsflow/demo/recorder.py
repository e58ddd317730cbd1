"""An in-memory unit of work for the demo generator.

The functions that record a change (`events.changes.record_change`, the SLA engine's
firing, task creation with deferred clocks) only add rows to their session, queue audit
rows in `session.info` and look up users and teams by id. The recorder gives them exactly
that, so the demo runs the real rules and collects what they would have written, to be
inserted in bulk. Anything else a rule might ask of a session fails loudly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.audit import writer as audit_writer
from opsflow.models.outbox import OutboxEvent


class Recorder:
    """Collects added rows; answers `get` from the rows it was given as known."""

    def __init__(self, known: Iterable[Any] = ()) -> None:
        self.info: dict[str, Any] = {}
        self.added: list[Any] = []
        self._known: dict[tuple[type, uuid.UUID], Any] = {}
        self._loaded: dict[int, dict[str, Any]] = {}
        for row in known:
            self.know(row)

    def know(self, row: Any) -> None:
        self._known[(type(row), row.id)] = row

    def add(self, row: Any) -> None:
        self.added.append(row)

    def add_all(self, rows: Iterable[Any]) -> None:
        self.added.extend(rows)

    def loaded(self, rows: Iterable[Any]) -> None:
        """These rows stand as a transaction would have read them: `is_modified` compares
        with their values now."""
        for row in rows:
            self._loaded[id(row)] = _values(row)

    def is_modified(self, row: Any, include_collections: bool = True) -> bool:
        """Whether the row's values differ from when it was `loaded` (a net change, as the
        session's own `is_modified` reports it); a row never loaded is new: modified."""
        before = self._loaded.get(id(row))
        return before is None or before != _values(row)

    async def flush(self) -> None:
        """Rows are written in bulk later."""

    async def get(self, model: type, ident: uuid.UUID, **_: Any) -> Any:
        return self._known.get((model, ident))

    @property
    def session(self) -> AsyncSession:
        """This recorder where a rule takes a session."""
        return cast(AsyncSession, self)

    def take(self) -> tuple[list[Any], list[audit_writer.Pending], list[OutboxEvent]]:
        """What was recorded since the last take: the rows (outbox events apart), the
        queued audit rows and the outbox events, each in the order they were written."""
        pending = audit_writer.take_pending(self.session)
        self.info.clear()
        rows = [row for row in self.added if not isinstance(row, OutboxEvent)]
        events = [row for row in self.added if isinstance(row, OutboxEvent)]
        self.added = []
        self._loaded.clear()
        return rows, pending, events


def _values(row: Any) -> dict[str, Any]:
    return {key: value for key, value in row.__dict__.items() if not key.startswith("_sa_")}
