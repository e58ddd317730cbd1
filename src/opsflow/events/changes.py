"""Recording a state change: its audit row and its outbox event, in one unit of work."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.audit import writer as audit
from opsflow.auth.principal import Principal
from opsflow.events import outbox


def record_change(
    session: AsyncSession,
    actor: Principal,
    *,
    entity_type: str,
    entity_id: uuid.UUID,
    action: str,
    event_type: str,
    payload: dict[str, Any],
    now: datetime,
    changes: dict[str, Any] | None = None,
    previous_state: dict[str, Any] | None = None,
    new_state: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Every state change goes through here (SPEC §5): audit row + outbox event together."""
    audit.record(
        session,
        actor,
        entity_type=entity_type,
        entity_id=entity_id,
        action=action,
        now=now,
        changes=changes,
        previous_state=previous_state,
        new_state=new_state,
        metadata=metadata,
    )
    outbox.emit(
        session,
        aggregate_type=entity_type,
        aggregate_id=entity_id,
        event_type=event_type,
        payload=payload,
        now=now,
        request_id=actor.meta.request_id,
    )
