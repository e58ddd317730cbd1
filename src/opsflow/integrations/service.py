"""Integration CRUD (admin, audited) and the secret keys of the inbound URLs."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.principal import Principal
from opsflow.errors import NotFound, ValidationFailed
from opsflow.events.changes import record_change
from opsflow.events.entities import Entity
from opsflow.integrations import repository
from opsflow.integrations.schemas import (
    DEFAULT_SEVERITY_MAP,
    IntegrationCreate,
    IntegrationRead,
    IntegrationType,
    IntegrationUpdate,
    IntegrationWithKey,
)
from opsflow.kit.jsonable import to_jsonable
from opsflow.kit.pagination import PageParams
from opsflow.kit.validation import patch_fields
from opsflow.models.integration import Integration, IntegrationEvent
from opsflow.models.team import Team

ENTITY = "integration"
SOURCE_PREFIX = "integration:"
_PATHS = {
    IntegrationType.GENERIC: "events",
    IntegrationType.ALERTMANAGER: "alertmanager",
    IntegrationType.GRAFANA: "grafana",
    IntegrationType.ELASTIC: "elastic",
}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def source_of(integration: Integration) -> str:
    """The `source` of the incidents an integration opens."""
    return f"{SOURCE_PREFIX}{integration.id}"


def read(row: Integration) -> IntegrationRead:
    return IntegrationRead(
        id=row.id,
        name=row.name,
        type=IntegrationType(row.type),
        key_hint=row.key_hint,
        team_id=row.team_id,
        severity_map=severity_map(row),
        auto_resolve=row.auto_resolve,
        has_signature_secret=row.signature_secret is not None,
        enabled=row.enabled,
        group_incidents=row.group_incidents,
        flap_threshold=row.flap_threshold,
        flap_window_minutes=row.flap_window_minutes,
        mapping=dict(row.mapping or {}),
        source=source_of(row),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def with_key(row: Integration, key: str) -> IntegrationWithKey:
    path = _PATHS[IntegrationType(row.type)]
    urls = {"events": f"/integrations/{key}/events"}
    urls[path] = f"/integrations/{key}/{path}"
    return IntegrationWithKey(**read(row).model_dump(), key=key, urls=urls)


def severity_map(row: Integration) -> dict[str, str]:
    return {**{str(k): str(v) for k, v in DEFAULT_SEVERITY_MAP.items()}, **(row.severity_map or {})}


def _state(row: Integration) -> dict[str, Any]:
    state = read(row).model_dump(exclude={"created_at", "updated_at", "key_hint"})
    return to_jsonable(state)  # type: ignore[no-any-return]


def _new_key() -> str:
    return secrets.token_urlsafe(24)


async def _check_team(session: AsyncSession, team_id: uuid.UUID | None) -> None:
    if team_id is None:
        return
    team = await session.get(Team, team_id)
    if team is None or not team.is_active:
        raise ValidationFailed(
            details=[{"field": "team_id", "message": f"no active team {team_id}"}]
        )


INTEGRATIONS = Entity(ENTITY, Integration, _state, title="An integration", named=repository.named)


async def create(
    session: AsyncSession, actor: Principal, data: IntegrationCreate, now: datetime
) -> IntegrationWithKey:
    await _check_team(session, data.team_id)
    await INTEGRATIONS.check_name(session, data.name)
    if actor.user_id is None and actor.on_behalf_of is None:
        raise ValidationFailed("An integration needs a user to record as creator of incidents")
    key = _new_key()
    row = Integration(
        id=uuid.uuid4(),
        name=data.name,
        type=data.type.value,
        key_hash=hash_key(key),
        key_hint=key[:6],
        team_id=data.team_id,
        severity_map={k.value: v.value for k, v in data.severity_map.items()},
        auto_resolve=data.auto_resolve,
        signature_secret=data.signature_secret,
        enabled=data.enabled,
        group_incidents=data.group_incidents,
        flap_threshold=data.flap_threshold,
        flap_window_minutes=data.flap_window_minutes,
        mapping=data.mapping.model_dump(exclude_none=True),
        created_by=actor.user_id or actor.on_behalf_of,
        created_at=now,
        updated_at=now,
    )
    await INTEGRATIONS.create(session, actor, row, now)
    return with_key(row, key)


async def get(session: AsyncSession, integration_id: uuid.UUID) -> Integration:
    return await INTEGRATIONS.get(session, integration_id)


async def update(
    session: AsyncSession,
    actor: Principal,
    integration_id: uuid.UUID,
    data: IntegrationUpdate,
    now: datetime,
) -> Integration:
    row = await get(session, integration_id)
    fields = patch_fields(data, nullable={"team_id", "signature_secret"})
    before = _state(row)
    if "name" in fields:
        await INTEGRATIONS.check_name(session, fields["name"], row.name)
    if "team_id" in fields:
        await _check_team(session, fields["team_id"])
    for name, value in fields.items():
        if name == "severity_map":
            row.severity_map = {str(k): str(v) for k, v in data.severity_map.items()}  # type: ignore[union-attr]
        elif name == "mapping":
            row.mapping = data.mapping.model_dump(exclude_none=True)  # type: ignore[union-attr]
        else:
            setattr(row, name, value)
    INTEGRATIONS.updated(session, actor, row, before, now)
    await session.flush()
    return row


async def rotate_key(
    session: AsyncSession, actor: Principal, integration_id: uuid.UUID, now: datetime
) -> IntegrationWithKey:
    """A new key; the old one stops working at once."""
    row = await get(session, integration_id)
    key = _new_key()
    row.key_hash, row.key_hint, row.updated_at = hash_key(key), key[:6], now
    await session.flush()
    record_change(
        session,
        actor,
        entity_type=ENTITY,
        entity_id=row.id,
        action="INTEGRATION_KEY_ROTATED",
        event_type="integration.key_rotated",
        payload={"integration": {"id": str(row.id), "name": row.name}},
        now=now,
    )
    return with_key(row, key)


async def delete(
    session: AsyncSession, actor: Principal, integration_id: uuid.UUID, now: datetime
) -> None:
    """The integration and its event log go; the incidents it opened stay."""
    await INTEGRATIONS.delete(session, actor, integration_id, now)
    await session.flush()


async def list_integrations(
    session: AsyncSession, page: PageParams
) -> tuple[list[Integration], int]:
    return await repository.page_of(session, page)


async def events(
    session: AsyncSession, integration_id: uuid.UUID, page: PageParams
) -> tuple[list[IntegrationEvent], int]:
    await get(session, integration_id)
    return await repository.events_of(session, integration_id, page)


async def by_key(session: AsyncSession, key: str) -> Integration:
    """The enabled integration this URL key belongs to; unknown or disabled: 404."""
    row = await repository.by_key_hash(session, hash_key(key))
    if row is None or not row.enabled:
        raise NotFound(ENTITY)
    return row
