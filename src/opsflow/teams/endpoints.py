from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from opsflow.auth.deps import require
from opsflow.auth.permissions import Permission
from opsflow.auth.principal import Principal
from opsflow.deps import ContextDep, SessionDep
from opsflow.idempotency.deps import Idempotent
from opsflow.kit.pagination import Page, PageDep, Pagination
from opsflow.models.team import Team
from opsflow.teams import service
from opsflow.teams.schemas import TeamCreate, TeamRead, TeamUpdate
from opsflow.users.schemas import UserRead
from opsflow.users.views import directory_view

router = APIRouter(prefix="/teams", tags=["teams"])

Reader = Annotated[Principal, Depends(require(Permission.READ_USERS))]
Manager = Annotated[Principal, Depends(require(Permission.MANAGE_TEAMS))]


async def _read(session: SessionDep, teams: list[Team]) -> list[TeamRead]:
    counts = await service.member_counts(session, [t.id for t in teams])
    return [
        TeamRead.model_validate(t).model_copy(update={"member_count": counts.get(t.id, 0)})
        for t in teams
    ]


@router.get("", response_model=Page[TeamRead])
async def list_teams(
    session: SessionDep, _: Reader, page: PageDep, include_inactive: bool = False
) -> Page[TeamRead]:
    rows, total = await service.search(session, page, include_inactive=include_inactive)
    return Page(items=await _read(session, rows), pagination=Pagination.of(page, total))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TeamRead)
async def create_team(
    body: TeamCreate, session: SessionDep, context: ContextDep, actor: Manager, _: Idempotent
) -> TeamRead:
    team = await service.create_team(session, context, actor, body)
    return (await _read(session, [team]))[0]


@router.get("/{team_id}", response_model=TeamRead)
async def get_team(team_id: uuid.UUID, session: SessionDep, _: Reader) -> TeamRead:
    return (await _read(session, [await service.get_team(session, team_id)]))[0]


@router.patch("/{team_id}", response_model=TeamRead)
async def update_team(
    team_id: uuid.UUID, body: TeamUpdate, session: SessionDep, context: ContextDep, actor: Manager
) -> TeamRead:
    team = await service.update_team(session, context, actor, team_id, body)
    return (await _read(session, [team]))[0]


@router.delete("/{team_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_team(
    team_id: uuid.UUID, session: SessionDep, context: ContextDep, actor: Manager
) -> Response:
    await service.delete_team(session, context, actor, team_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{team_id}/members", response_model=list[UserRead])
async def members(
    team_id: uuid.UUID, session: SessionDep, reader: Reader, include_inactive: bool = False
) -> list[UserRead]:
    await service.get_team(session, team_id)
    rows = await service.members(session, team_id, include_inactive=include_inactive)
    return [directory_view(reader, u) for u in rows]
