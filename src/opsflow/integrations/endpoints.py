"""`/integrations`: CRUD (admin), the event log, and the inbound alert endpoints.

The inbound endpoints authenticate by the secret key in their URL (monitoring systems
cannot send bearer tokens). They answer 2xx only once the events are committed, 503 when
the database is unavailable (the senders retry on 5xx and drop on 4xx), and never 429.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response, status

from opsflow.auth.deps import require
from opsflow.auth.permissions import Permission
from opsflow.auth.principal import Principal
from opsflow.context import AppContext
from opsflow.deps import ClockDep, SessionDep, request_meta
from opsflow.errors import InvalidSignature, MethodNotAllowed, ServiceUnavailable, declares
from opsflow.idempotency.deps import IdempotentWithheld
from opsflow.integrations import parsers, service
from opsflow.integrations.intake import AlertIntake
from opsflow.integrations.schemas import (
    AlertsAccepted,
    EventAccepted,
    IntegrationCreate,
    IntegrationEventRead,
    IntegrationRead,
    IntegrationUpdate,
    IntegrationWithKey,
)
from opsflow.kit.pagination import Page, PageDep, Pagination
from opsflow.models.integration import Integration

router = APIRouter(prefix="/integrations", tags=["integrations"])
Admin = Annotated[Principal, Depends(require(Permission.ADMINISTER))]
Key = Annotated[str, Path(min_length=1, max_length=200, description="the integration's key")]

# The inbound bodies are read raw (the Grafana signature covers the exact bytes) and parsed
# by the format's own rules; the document states their JSON shape, and each format's
# parser answers 400 for what lies beyond it (a trigger's payload, an alert's labels ...).
_SEVERITIES = ["critical", "error", "warning", "info"]
GENERIC_BODY: dict[str, Any] = {
    "type": "object",
    "description": "PagerDuty Events API v2: trigger, acknowledge or resolve an incident",
    "required": ["event_action"],
    "properties": {
        "event_action": {"type": "string", "enum": list(parsers.ACTIONS)},
        "dedup_key": {"type": "string", "minLength": 1, "maxLength": parsers.MAX_KEY},
        "payload": {
            "type": "object",
            "properties": {
                "summary": {"type": "string", "minLength": 1, "maxLength": parsers.MAX_SUMMARY},
                "severity": {"type": "string", "enum": _SEVERITIES},
                "source": {"type": "string", "minLength": 1},
            },
        },
    },
}
ALERTS_BODY: dict[str, Any] = {
    "type": "object",
    "description": "the webhook notification: a group of alerts",
    "required": ["alerts"],
    "properties": {
        "alerts": {"type": "array", "items": {"type": "object"}},
        "groupKey": {"type": "string"},
    },
}
ELASTIC_BODY: dict[str, Any] = {
    "type": "object",
    "description": "the rule's or watch's document, read through the integration's mapping",
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


# Grafana's webhook contact point signs with HMAC-SHA256, hex, keyed by the secret of its
# HMAC settings. The header is the one named there, which the UI suggests as
# X-Grafana-Alerting-Signature; left empty, Grafana sends X-Grafana-Alert-Signature. A
# timestamp header has no default name: when one is named, Grafana puts the Unix time (in
# seconds) there and signs ``timestamp:body``; the two names its documentation uses are read.
SIGNATURE_HEADERS = ("X-Grafana-Alerting-Signature", "X-Grafana-Alert-Signature")
SIGNATURE_TIMESTAMP_HEADERS = (
    "X-Grafana-Alerting-Signature-Timestamp",
    "X-Grafana-Alerting-Timestamp",
)


@router.get("", response_model=Page[IntegrationRead])
async def list_integrations(session: SessionDep, _: Admin, page: PageDep) -> Page[IntegrationRead]:
    rows, total = await service.list_integrations(session, page)
    return Page(items=[service.read(r) for r in rows], pagination=Pagination.of(page, total))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=IntegrationWithKey)
async def create_integration(
    body: IntegrationCreate,
    session: SessionDep,
    clock: ClockDep,
    actor: Admin,
    response: Response,
    _: IdempotentWithheld,
) -> IntegrationWithKey:
    """The answer carries the key of the inbound URLs: the only time it is shown (so an
    `Idempotency-Key` replay does not repeat it)."""
    created = await service.create(session, actor, body, clock.now())
    response.headers["Location"] = f"/api/v1/integrations/{created.id}"
    return created


@router.get("/{integration_id}", response_model=IntegrationRead)
async def get_integration(
    integration_id: uuid.UUID, session: SessionDep, _: Admin
) -> IntegrationRead:
    return service.read(await service.get(session, integration_id))


@router.patch("/{integration_id}", response_model=IntegrationRead)
async def update_integration(
    integration_id: uuid.UUID,
    body: IntegrationUpdate,
    session: SessionDep,
    clock: ClockDep,
    actor: Admin,
) -> IntegrationRead:
    row = await service.update(session, actor, integration_id, body, clock.now())
    return service.read(row)


@router.delete("/{integration_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_integration(
    integration_id: uuid.UUID, session: SessionDep, clock: ClockDep, actor: Admin
) -> Response:
    await service.delete(session, actor, integration_id, clock.now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{integration_id}/rotate-key", response_model=IntegrationWithKey)
async def rotate_key(
    integration_id: uuid.UUID, session: SessionDep, clock: ClockDep, actor: Admin
) -> IntegrationWithKey:
    """A new key, shown once; the previous one stops working at once."""
    return await service.rotate_key(session, actor, integration_id, clock.now())


@router.get("/{integration_id}/events", response_model=Page[IntegrationEventRead])
@declares(MethodNotAllowed)  # a path whose id is no UUID is an inbound key's (POST only)
async def list_events(
    integration_id: uuid.UUID, session: SessionDep, _: Admin, page: PageDep
) -> Page[IntegrationEventRead]:
    """What came in, newest first (kept OPSFLOW_INTEGRATION_EVENT_RETENTION_DAYS days)."""
    rows, total = await service.events(session, integration_id, page)
    return Page(
        items=[IntegrationEventRead.model_validate(r) for r in rows],
        pagination=Pagination.of(page, total),
    )


# --- inbound ------------------------------------------------------------------------------


def _signature_headers(request: Request) -> tuple[str, str | None]:
    signature = next((request.headers[h] for h in SIGNATURE_HEADERS if h in request.headers), "")
    timestamp = next(
        (request.headers[h] for h in SIGNATURE_TIMESTAMP_HEADERS if h in request.headers), None
    )
    return signature, timestamp


def _verify_signature(
    integration: Integration, headers: tuple[str, str | None], raw: bytes
) -> None:
    """Grafana's HMAC-SHA256 of the body (hex), keyed by the contact point's secret; with a
    timestamp header, of ``timestamp:body``."""
    secret = integration.signature_secret
    if secret is None:
        return
    signature, timestamp = headers
    given = signature.strip().lower().removeprefix("sha256=")
    message = f"{timestamp}:".encode() + raw if timestamp else raw
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    if not given or not hmac.compare_digest(given, expected):
        raise InvalidSignature(
            f"Missing or wrong {SIGNATURE_HEADERS[0]}: expected the HMAC-SHA256 of the body"
        )


def _intake(context: AppContext) -> AlertIntake:
    if context.alert_intake is None:
        context.alert_intake = AlertIntake(context)
    return context.alert_intake


@router.post(
    "/{key}/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EventAccepted,
    openapi_extra=_body(GENERIC_BODY),
)
@declares(InvalidSignature, ServiceUnavailable)
async def generic_event(key: Key, request: Request) -> EventAccepted:
    """An event with PagerDuty Events API v2 semantics (trigger, acknowledge, resolve)."""
    # The context and the sender's meta read from the request: the inbound endpoints take
    # no dependencies of their own, each would cost FastAPI's bookkeeping per event.
    context: AppContext = request.app.state.context
    meta = request_meta(request)
    raw = await request.body()
    headers = _signature_headers(request)

    def parse(integration: Integration) -> list[parsers.AlertEvent]:
        _verify_signature(integration, headers, raw)
        return [parsers.parse_generic(parsers.load_body(raw))]

    outcomes = await _intake(context).submit(key, parse, meta)
    return EventAccepted(dedup_key=outcomes[0].dedup_key)


async def _alerts(key: str, request: Request, *, elastic: bool = False) -> AlertsAccepted:
    context: AppContext = request.app.state.context
    meta = request_meta(request)
    raw = await request.body()
    headers = _signature_headers(request)

    def parse(integration: Integration) -> list[parsers.AlertEvent]:
        _verify_signature(integration, headers, raw)
        body = parsers.load_body(raw)
        if elastic:
            return [parsers.parse_elastic(body, dict(integration.mapping or {}))]
        return parsers.parse_alertmanager(body, per_group=integration.group_incidents)

    outcomes = await _intake(context).submit(key, parse, meta)
    return AlertsAccepted(
        results=[
            {
                "dedup_key": o.dedup_key,
                "action": o.action,
                "outcome": o.outcome,
                "task_id": str(o.task_id) if o.task_id else None,
            }
            for o in outcomes
        ]
    )


@router.post(
    "/{key}/alertmanager",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AlertsAccepted,
    openapi_extra=_body(ALERTS_BODY),
)
@declares(InvalidSignature, ServiceUnavailable)
async def alertmanager_webhook(key: Key, request: Request) -> AlertsAccepted:
    """Prometheus Alertmanager's webhook (version 4): one incident per alert fingerprint."""
    return await _alerts(key, request)


@router.post(
    "/{key}/grafana",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AlertsAccepted,
    openapi_extra=_body(ALERTS_BODY),
)
@declares(InvalidSignature, ServiceUnavailable)
async def grafana_webhook(key: Key, request: Request) -> AlertsAccepted:
    """Grafana's webhook contact point; its HMAC signature is verified when a secret is set."""
    return await _alerts(key, request)


@router.post(
    "/{key}/elastic",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AlertsAccepted,
    openapi_extra=_body(ELASTIC_BODY),
)
@declares(InvalidSignature, ServiceUnavailable)
async def elastic_webhook(key: Key, request: Request) -> AlertsAccepted:
    """Kibana rule actions and Watcher webhook actions, read through the integration's
    JSON-pointer mapping (defaults: Kibana's rule variables, Watcher's ctx)."""
    return await _alerts(key, request, elastic=True)
