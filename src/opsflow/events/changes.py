"""Recording a state change: its audit row and its outbox event, in one unit of work."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.audit import writer as audit
from opsflow.auth.principal import Principal
from opsflow.events import outbox
from opsflow.kit.changes import field_changes


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
    """Every state change goes through here: audit row + outbox event together."""
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


def record_entity_change(
    session: AsyncSession,
    actor: Principal,
    entity_type: str,
    entity_id: uuid.UUID,
    verb: str,
    now: datetime,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    *,
    metadata: dict[str, Any] | None = None,
) -> None:
    """A configuration entity created, updated or deleted (`verb` CREATED|UPDATED|DELETED):
    action `<ENTITY>_<VERB>`, event `<entity>.<verb>`, the before/after states and their
    field changes."""
    record_change(
        session,
        actor,
        entity_type=entity_type,
        entity_id=entity_id,
        action=f"{entity_type.upper()}_{verb}",
        event_type=f"{entity_type}.{verb.lower()}",
        payload={"name": (new or old or {}).get("name"), "old": old, "new": new},
        now=now,
        changes=None if old is None or new is None else field_changes(old, new),
        previous_state=old,
        new_state=new,
        metadata=metadata,
    )
