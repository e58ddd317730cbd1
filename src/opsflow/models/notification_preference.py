from __future__ import annotations

import uuid

from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from opsflow.db import Base
from opsflow.models.mixins import Timestamps, UUIDPrimaryKey


class NotificationPreference(UUIDPrimaryKey, Timestamps, Base):
    """Per user per channel: enabled, address override, optional quiet hours."""

    __tablename__ = "notification_preferences"
    __table_args__ = (UniqueConstraint("user_id", "channel"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    address: Mapped[str | None] = mapped_column(String(500))
    quiet_hours_start: Mapped[str | None] = mapped_column(String(5))
    quiet_hours_end: Mapped[str | None] = mapped_column(String(5))
    timezone: Mapped[str | None] = mapped_column(String(64))
