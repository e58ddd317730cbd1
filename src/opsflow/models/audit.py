from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from opsflow.db import Base
from opsflow.kit.types import UTCDateTime, json_type
from opsflow.models.mixins import UUIDPrimaryKey


class AuditLog(UUIDPrimaryKey, Base):
    """One row per state change; rows are chained by hash in `seq` order.

    On PostgreSQL a row is inserted without its place in the chain (`seq`, `prev_hash`,
    `hash` NULL, its hashed content in `pending_content`) and sealed by the database when
    its transaction commits (migration 0025), so a committed row always has all three and
    no other transaction ever sees one without them. SQLite rows are chained before insert.
    """

    __tablename__ = "audit_logs"
    __table_args__ = (
        Index("ix_audit_logs_entity", "entity_type", "entity_id"),
        Index("ix_audit_logs_timestamp", "timestamp"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, unique=True, nullable=True)
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    action: Mapped[str] = mapped_column(String(64), index=True)
    actor_type: Mapped[str] = mapped_column(String(16))
    # Not a foreign key: the actor may be a user or an API client.
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    actor_name: Mapped[str | None] = mapped_column(String(255))
    previous_state: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    new_state: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    changes: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    request_id: Mapped[str | None] = mapped_column(String(128))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", json_type(), default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=True)
    # The canonical JSON of the hashed content around the value of "seq", until sealed.
    pending_content: Mapped[str | None] = mapped_column(Text)
