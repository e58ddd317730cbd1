from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Float, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from opsflow.db import Base
from opsflow.kit.types import UTCDateTime


class EngineHeartbeat(Base):
    """A process that runs engine rounds (`opsflow serve`'s loop, `opsflow engine`, a Celery
    worker's job), as it last reported itself: written at most every few seconds while it
    runs rounds, removed when it stops cleanly. A row whose `last_seen` is far behind its
    `interval_seconds` belongs to a process that died or stalls."""

    __tablename__ = "engine_heartbeats"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)  # one per process run
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    driver: Mapped[str] = mapped_column(String(32))  # serve | engine | celery
    passes: Mapped[str] = mapped_column(String(500))  # the engines it runs, comma separated
    # The longest it waits between rounds when nothing is due (its driver's interval).
    interval_seconds: Mapped[float] = mapped_column(Float)
    rounds: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
