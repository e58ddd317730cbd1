from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AuditActor(BaseModel):
    id: uuid.UUID | None
    username: str | None


class AuditLogRead(BaseModel):
    id: uuid.UUID
    seq: int
    entity_type: str
    entity_id: uuid.UUID
    action: str
    actor_type: str
    actor: AuditActor
    changes: dict[str, Any] | None
    previous_state: dict[str, Any] | None
    new_state: dict[str, Any] | None
    metadata: dict[str, Any]
    timestamp: datetime
    ip_address: str | None
    user_agent: str | None
    request_id: str | None
    hash: str
    prev_hash: str


class ChainVerification(BaseModel):
    valid: bool
    checked: int
    head_seq: int | None
    head_hash: str | None
    first_invalid_seq: int | None = None
    reason: str | None = None
    verified_at: datetime
