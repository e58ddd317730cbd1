"""Teams: a name, a lead, a default escalation policy; members are users with its team_id."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.principal import Principal
from opsflow.context import AppContext
from opsflow.errors import Conflict, NotFound, ValidationFailed
from opsflow.escalation import repository as escalation_repo
from opsflow.events.changes import record_change
from opsflow.kit.changes import field_changes
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.team import Team
from opsflow.teams import repository
from opsflow.teams.schemas import TeamCreate, TeamUpdate
from opsflow.users import repository as users_repo


def team_state(team: Team) -> dict[str, Any]:
    return {
        "name": team.name,
        "description": team.description,
        "lead_id": team.lead_id,
        "escalation_policy_id": team.escalation_policy_id,
        "is_active": team.is_active,
    }


def _record(
    session: AsyncSession,
    actor: Principal,
    team: Team,
    action: str,
    event: str,
    now: Any,
    **fields: Any,
) -> None:
    record_change(
        session,
        actor,
        entity_type="team",
        entity_id=team.id,
        action=action,
        event_type=event,
        payload={"team": {"id": team.id, **team_state(team)}},
        now=now,
        **fields,
    )


async def get_team(session: AsyncSession, team_id: uuid.UUID) -> Team:
    team = await repository.get(session, team_id)
    if team is None:
        raise NotFound("team", team_id)
    return team


async def _check_name(session: AsyncSession, name: str, own_id: uuid.UUID | None) -> None:
    existing = await repository.by_name(session, name)
    if existing is not None and existing.id != own_id:
        raise Conflict(
            "A team with this name already exists",
            details=[{"field": "name", "message": "already taken"}],
        )


async def _check_lead(session: AsyncSession, lead_id: uuid.UUID | None) -> None:
    if lead_id is None:
        return
    lead = await users_repo.get(session, lead_id)
    if lead is None or not lead.is_active:
        raise ValidationFailed(
            details=[{"field": "lead_id", "message": f"no active user {lead_id}"}]
        )


async def _check_policy(session: AsyncSession, policy_id: uuid.UUID | None) -> None:
    """A team's default escalation policy must exist (it escalates the team's tasks that
    match no policy, before the built-in default)."""
    if policy_id is None:
        return
    if await escalation_repo.get_policy(session, policy_id) is None:
        raise ValidationFailed(
            details=[
                {"field": "escalation_policy_id", "message": f"no escalation policy {policy_id}"}
            ]
        )


async def create_team(
    session: AsyncSession, ctx: AppContext, actor: Principal, data: TeamCreate
) -> Team:
    await _check_name(session, data.name, None)
    await _check_lead(session, data.lead_id)
    await _check_policy(session, data.escalation_policy_id)
    now = ctx.clock.now()
    team = Team(
        id=uuid.uuid4(),
        name=data.name,
        description=data.description,
        lead_id=data.lead_id,
        escalation_policy_id=data.escalation_policy_id,
        is_active=True,
        created_at=now,
        updated_at=now,
    )
    session.add(team)
    await session.flush()
    _record(session, actor, team, "TEAM_CREATED", "team.created", now, new_state=team_state(team))
    return team


async def update_team(
    session: AsyncSession, ctx: AppContext, actor: Principal, team_id: uuid.UUID, data: TeamUpdate
) -> Team:
    team = await get_team(session, team_id)
    fields = data.model_dump(exclude_unset=True)
    if "name" in fields:
        await _check_name(session, fields["name"], team.id)
    if "lead_id" in fields:
        await _check_lead(session, fields["lead_id"])
    if "escalation_policy_id" in fields:
        await _check_policy(session, fields["escalation_policy_id"])
    before = to_jsonable(team_state(team))
    for key, value in fields.items():
        setattr(team, key, value)
    changes = field_changes(before, to_jsonable(team_state(team)))
    if not changes:
        return team
    now = ctx.clock.now()
    team.updated_at = now
    await session.flush()
    _record(session, actor, team, "TEAM_UPDATED", "team.updated", now, changes=changes)
    return team


async def delete_team(
    session: AsyncSession, ctx: AppContext, actor: Principal, team_id: uuid.UUID
) -> None:
    """Deactivate: tasks and audit rows keep pointing at the team, members keep their team_id."""
    team = await get_team(session, team_id)
    if not team.is_active:
        return
    now = ctx.clock.now()
    team.is_active = False
    team.updated_at = now
    await session.flush()
    _record(
        session,
        actor,
        team,
        "TEAM_DEACTIVATED",
        "team.deactivated",
        now,
        changes={"is_active": {"from": True, "to": False}},
    )
