from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from opsflow.auth.deps import CurrentPrincipal, require
from opsflow.auth.permissions import Permission
from opsflow.auth.principal import Principal
from opsflow.deps import ContextDep, SessionDep
from opsflow.errors import Forbidden, RateLimited, ServiceUnavailable, declares
from opsflow.idempotency.deps import Idempotent
from opsflow.kit.pagination import Page, PageDep, Pagination
from opsflow.kit.validation import SearchText
from opsflow.models.enums import Role
from opsflow.users import service, views
from opsflow.users.schemas import (
    NotificationPreferenceItem,
    NotificationPreferences,
    UserRead,
    UserUpdate,
)

router = APIRouter(prefix="/users", tags=["users"])

Reader = Annotated[Principal, Depends(require(Permission.READ_USERS))]
Admin = Annotated[Principal, Depends(require(Permission.ADMINISTER))]


@router.get("", response_model=Page[UserRead])
async def list_users(
    session: SessionDep,
    reader: Reader,
    page: PageDep,
    role: Role | None = None,
    team_id: uuid.UUID | None = None,
    is_active: bool | None = None,
    q: Annotated[SearchText | None, Query()] = None,
) -> Page[UserRead]:
    """E-mail addresses follow the directory rule (see `UserRead.email`); `q` matches
    only the addresses the caller may read."""
    rows, total = await service.search(
        session,
        page,
        role=role,
        team_id=team_id,
        is_active=is_active,
        q=q,
        email_reach=views.email_reach(reader),
    )
    return Page(
        items=[views.directory_view(reader, u) for u in rows],
        pagination=Pagination.of(page, total),
    )


def _own(principal: Principal) -> uuid.UUID:
    if principal.user_id is None:
        raise Forbidden("Only users have notification preferences")
    return principal.user_id


@router.get("/me/notification-preferences", response_model=NotificationPreferences)
@declares(Forbidden)
async def get_preferences(
    session: SessionDep, principal: CurrentPrincipal
) -> NotificationPreferences:
    rows = await service.get_preferences(session, _own(principal))
    return NotificationPreferences(
        preferences=[NotificationPreferenceItem.model_validate(p) for p in rows]
    )


@router.put("/me/notification-preferences", response_model=NotificationPreferences)
@declares(Forbidden)
async def put_preferences(
    body: NotificationPreferences,
    session: SessionDep,
    context: ContextDep,
    principal: CurrentPrincipal,
) -> NotificationPreferences:
    _own(principal)
    rows = await service.put_preferences(session, context, principal, body.preferences)
    return NotificationPreferences(
        preferences=[NotificationPreferenceItem.model_validate(p) for p in rows]
    )


@router.get("/me", response_model=UserRead)
@declares(Forbidden)
async def get_me(session: SessionDep, principal: CurrentPrincipal) -> UserRead:
    """The signed-in user (any role); an API client is not a user (403)."""
    return UserRead.model_validate(await service.get_user(session, _me(principal)))


@router.patch("/me", response_model=UserRead)
@declares(Forbidden, RateLimited, ServiceUnavailable)
async def update_me(
    body: UserUpdate, session: SessionDep, context: ContextDep, principal: CurrentPrincipal
) -> UserRead:
    """`PATCH /users/{id}` of the signed-in user (the same rules on what one may change)."""
    user = await service.update_user(session, context, principal, _me(principal), body)
    return UserRead.model_validate(user)


def _me(principal: Principal) -> uuid.UUID:
    if principal.user_id is None:
        raise Forbidden("An API client is not a user: /users/me is for signed-in users")
    return principal.user_id


@router.get("/{user_id}", response_model=UserRead)
async def get_user(user_id: uuid.UUID, session: SessionDep, reader: Reader) -> UserRead:
    return views.directory_view(reader, await service.get_user(session, user_id))


@router.patch("/{user_id}", response_model=UserRead)
@declares(Forbidden, RateLimited, ServiceUnavailable)
async def update_user(
    user_id: uuid.UUID,
    body: UserUpdate,
    session: SessionDep,
    context: ContextDep,
    principal: CurrentPrincipal,
) -> UserRead:
    user = await service.update_user(session, context, principal, user_id, body)
    return UserRead.model_validate(user)


@router.post("/{user_id}/deactivate", response_model=UserRead)
async def deactivate_user(
    user_id: uuid.UUID, session: SessionDep, context: ContextDep, actor: Admin, _: Idempotent
) -> UserRead:
    return UserRead.model_validate(await service.deactivate_user(session, context, actor, user_id))
