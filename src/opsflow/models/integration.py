"""Alert integrations: inbound endpoints that turn monitoring alerts into incidents."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from opsflow.db import Base
from opsflow.kit.types import UTCDateTime, json_type
from opsflow.models.mixins import Timestamps, UUIDPrimaryKey


class Integration(UUIDPrimaryKey, Timestamps, Base):
    """One sender of alerts (an Alertmanager, a Grafana, a script...), reached by its key."""

    __tablename__ = "integrations"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    type: Mapped[str] = mapped_column(String(16))  # generic | alertmanager | grafana | elastic
    # SHA-256 of the secret key in the inbound URL; the key itself is shown once.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_hint: Mapped[str] = mapped_column(String(8))  # the key's first characters
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("teams.id", ondelete="SET NULL")
    )
    # {"critical": "CRITICAL", "error": "HIGH", ...}: alert severity -> task priority.
    severity_map: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    auto_resolve: Mapped[bool] = mapped_column(Boolean, default=True)
    # Grafana's HMAC secret (needed in clear to verify signatures; never shown back).
    signature_secret: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Alertmanager/Grafana: one incident per notification group instead of one per alert.
    group_incidents: Mapped[bool] = mapped_column(Boolean, default=False)
    flap_threshold: Mapped[int] = mapped_column(Integer, default=4)
    flap_window_minutes: Mapped[int] = mapped_column(Integer, default=30)
    # Elastic: JSON pointers for dedup_key, summary, severity, action.
    mapping: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id"))
    last_pruned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IntegrationEvent(UUIDPrimaryKey, Base):
    """What an integration received and what came of it (kept a configurable number of days)."""

    __tablename__ = "integration_events"
    __table_args__ = (
        Index("ix_integration_events_integration_received", "integration_id", "received_at"),
    )

    integration_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("integrations.id", ondelete="CASCADE")
    )
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    dedup_key: Mapped[str | None] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16))  # trigger | acknowledge | resolve
    # created | updated | escalated | acknowledged | resolved | recorded | reopened | ignored
    outcome: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    summary: Mapped[str | None] = mapped_column(Text)


class AlertFlap(Base):
    """A flapping incident and the instant it may settle: the flapping engine claims the
    due ones (indexed `settle_at`), and settles them, or plans the next check."""

    __tablename__ = "alert_flaps"

    task_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    integration_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("integrations.id", ondelete="CASCADE")
    )
    settle_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
