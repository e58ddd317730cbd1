from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from opsflow.db import Base
from opsflow.kit.types import UTCDateTime, json_type
from opsflow.models.mixins import UUIDPrimaryKey


class OutboxEvent(UUIDPrimaryKey, Base):
    """An event written in the same transaction as the change it reports."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_events_pending", "published_at", "available_at"),
        Index("ix_outbox_events_stream_seq", "stream_seq", unique=True),
    )

    aggregate_type: Mapped[str] = mapped_column(String(64))
    aggregate_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(json_type())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The WebSocket stream's position of a streamed event: 1, 2, 3... in the order the
    # relay committed them (assigned under a lock held to the commit), None for others.
    stream_seq: Mapped[int | None] = mapped_column(BigInteger)
    # The W3C traceparent of the span that wrote the event (tracing on), continued by the
    # relay; None otherwise.
    trace_context: Mapped[str | None] = mapped_column(String(128))
