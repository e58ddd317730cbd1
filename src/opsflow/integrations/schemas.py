"""`/integrations` bodies and answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from opsflow.kit.validation import EntityName, JsonBool, WholeNumber, null_only_for, reject_nul
from opsflow.models.enums import Priority


class IntegrationType(StrEnum):
    GENERIC = "generic"
    ALERTMANAGER = "alertmanager"
    GRAFANA = "grafana"
    ELASTIC = "elastic"


class Severity(StrEnum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


# Severity order, worst first (a worse severity raises the incident's priority).
SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}
DEFAULT_SEVERITY_MAP: dict[str, str] = {
    Severity.CRITICAL: Priority.CRITICAL,
    Severity.ERROR: Priority.HIGH,
    Severity.WARNING: Priority.MEDIUM,
    Severity.INFO: Priority.LOW,
}
MAPPING_FIELDS = ("dedup_key", "summary", "severity", "action")

SignatureSecret = Annotated[
    str, StringConstraints(min_length=8, max_length=200, pattern=r"^[\x21-\x7e]+$")
]
FlapThreshold = Annotated[int, Field(ge=1, le=1000, strict=True), WholeNumber]
FlapWindow = Annotated[int, Field(ge=1, le=10_080, strict=True), WholeNumber]
Pointer = Annotated[
    str,
    StringConstraints(max_length=500, pattern=r"^(/[^/]*)*$"),
    AfterValidator(reject_nul),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ElasticMapping(_Strict):
    """JSON pointers (RFC 6901) into the posted document; unset: the defaults, which read
    Kibana's rule variables and Watcher's ``ctx``."""

    dedup_key: Pointer | None = None
    summary: Pointer | None = None
    severity: Pointer | None = None
    action: Pointer | None = None


class IntegrationCreate(_Strict):
    name: EntityName
    type: IntegrationType
    team_id: uuid.UUID | None = None
    severity_map: dict[Severity, Priority] = Field(
        default_factory=dict, description="alert severity -> priority; unset ones keep defaults"
    )
    auto_resolve: JsonBool = True
    signature_secret: SignatureSecret | None = Field(
        None, description="Grafana: the HMAC secret of the contact point"
    )
    enabled: JsonBool = True
    group_incidents: JsonBool = Field(
        False, description="Alertmanager/Grafana: one incident per group instead of per alert"
    )
    flap_threshold: FlapThreshold = 4
    flap_window_minutes: FlapWindow = 30
    mapping: ElasticMapping = Field(default_factory=ElasticMapping)


class IntegrationUpdate(_Strict):
    """Fields left out keep their value; only `team_id` and `signature_secret` may be
    cleared with null."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra=null_only_for("team_id", "signature_secret")
    )

    name: EntityName | None = None
    team_id: uuid.UUID | None = None
    severity_map: dict[Severity, Priority] | None = None
    auto_resolve: JsonBool | None = None
    signature_secret: SignatureSecret | None = None
    enabled: JsonBool | None = None
    group_incidents: JsonBool | None = None
    flap_threshold: FlapThreshold | None = None
    flap_window_minutes: FlapWindow | None = None
    mapping: ElasticMapping | None = None


class IntegrationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    type: IntegrationType
    key_hint: str = Field(description="the first characters of the key, to tell keys apart")
    team_id: uuid.UUID | None
    severity_map: dict[str, str]
    auto_resolve: JsonBool
    has_signature_secret: bool
    enabled: bool
    group_incidents: bool
    flap_threshold: int
    flap_window_minutes: int
    mapping: dict[str, str | None]
    source: str = Field(description="the `source` of the incidents this integration opens")
    created_at: datetime
    updated_at: datetime


class IntegrationWithKey(IntegrationRead):
    key: str = Field(description="shown only now: the secret part of the inbound URLs")
    urls: dict[str, str] = Field(description="the inbound URLs (relative to the API root)")


class IntegrationEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    received_at: datetime
    dedup_key: str | None
    action: str
    outcome: str
    task_id: uuid.UUID | None
    summary: str | None


class EventAccepted(BaseModel):
    status: str = "success"
    message: str = "Event processed"
    dedup_key: str | None = None


class AlertsAccepted(BaseModel):
    status: str = "success"
    message: str = "Alerts processed"
    results: list[dict[str, str | None]]
