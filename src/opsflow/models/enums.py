"""The shared vocabulary of the domain: values stored in columns and shown on the wire."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    TEAM_LEAD = "team_lead"
    DEVELOPER = "developer"
    SUPPORT = "support"
    AUDITOR = "auditor"
    VIEWER = "viewer"


class TaskType(StrEnum):
    TASK = "TASK"
    INCIDENT = "INCIDENT"


class Priority(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.LOW: 1, Priority.MEDIUM: 2, Priority.HIGH: 3, Priority.CRITICAL: 4}


class TaskStatus(StrEnum):
    CREATED = "CREATED"
    ASSIGNED = "ASSIGNED"
    IN_PROGRESS = "IN_PROGRESS"
    BLOCKED = "BLOCKED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


class CustomerTier(StrEnum):
    ENTERPRISE = "ENTERPRISE"
    PREMIUM = "PREMIUM"
    STANDARD = "STANDARD"
    BASIC = "BASIC"


class ActorType(StrEnum):
    USER = "user"
    SYSTEM = "system"
    API = "api"


class Channel(StrEnum):
    EMAIL = "EMAIL"
    WEBHOOK = "WEBHOOK"
    SLACK = "SLACK"
    SMS = "SMS"


class Scope(StrEnum):
    TASKS_READ = "tasks:read"
    TASKS_WRITE = "tasks:write"
    TICKETS_INGEST = "tickets:ingest"
    REPORTS_READ = "reports:read"


class SlaKind(StrEnum):
    """Which of a task's two clocks: time to the first response, or to the resolution."""

    START = "START"
    RESOLVE = "RESOLVE"


class ClockStatus(StrEnum):
    """An SLA clock's stored status (the read side derives its state from the instants)."""

    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    MET = "MET"
    BREACHED = "BREACHED"
    CANCELLED = "CANCELLED"


class EscalationStatus(StrEnum):
    """A planned escalation step: waiting, fired, cancelled by a task change, or skipped
    for want of recipients."""

    PENDING = "PENDING"
    FIRED = "FIRED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"


class NotificationStatus(StrEnum):
    """A queued message: due (PENDING, RETRY), delivered, or given up (FAILED: retrying cannot
    help; DEAD: every attempt spent)."""

    PENDING = "PENDING"
    SENT = "SENT"
    FAILED = "FAILED"
    RETRY = "RETRY"
    DEAD = "DEAD"


# Notifications the delivery engine still has to send.
DELIVERABLE = (NotificationStatus.PENDING, NotificationStatus.RETRY)
