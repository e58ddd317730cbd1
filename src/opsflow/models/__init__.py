"""ORM classes, one module per aggregate. Importing this package registers them all."""

from opsflow.models.attachment import Attachment, Upload, UploadChunk
from opsflow.models.audit import AuditLog
from opsflow.models.auth import ApiClient, AuthSession, RefreshToken
from opsflow.models.collaboration import Comment, TaskReadMarker, TaskWatcher
from opsflow.models.engine import EngineHeartbeat
from opsflow.models.escalation import EscalationEvent, EscalationPolicy
from opsflow.models.heartbeat import HeartbeatMonitor, HeartbeatPing, HeartbeatRun
from opsflow.models.idempotency import IdempotencyRecord
from opsflow.models.integration import AlertFlap, Integration, IntegrationEvent
from opsflow.models.notification import (
    MaintenanceWindow,
    Notification,
    NotificationTemplate,
    WebhookSubscription,
)
from opsflow.models.notification_preference import NotificationPreference
from opsflow.models.outbox import OutboxEvent
from opsflow.models.report import (
    ReportAckSlot,
    ReportClockHour,
    ReportDurationBin,
    ReportTagSlot,
    ReportTaskSlot,
)
from opsflow.models.sla import (
    BusinessCalendarRow,
    SlaClock,
    SlaEvent,
    SlaPolicyRow,
    SlaSettingsRow,
)
from opsflow.models.task import Task, TaskAssignee
from opsflow.models.team import Team
from opsflow.models.user import User

__all__ = [
    "AlertFlap",
    "ApiClient",
    "Attachment",
    "AuditLog",
    "AuthSession",
    "BusinessCalendarRow",
    "Comment",
    "EngineHeartbeat",
    "EscalationEvent",
    "EscalationPolicy",
    "HeartbeatMonitor",
    "HeartbeatPing",
    "HeartbeatRun",
    "IdempotencyRecord",
    "Integration",
    "IntegrationEvent",
    "MaintenanceWindow",
    "Notification",
    "NotificationPreference",
    "NotificationTemplate",
    "OutboxEvent",
    "RefreshToken",
    "ReportAckSlot",
    "ReportClockHour",
    "ReportDurationBin",
    "ReportTagSlot",
    "ReportTaskSlot",
    "SlaClock",
    "SlaEvent",
    "SlaPolicyRow",
    "SlaSettingsRow",
    "Task",
    "TaskAssignee",
    "TaskReadMarker",
    "TaskWatcher",
    "Team",
    "Upload",
    "UploadChunk",
    "User",
    "WebhookSubscription",
]
