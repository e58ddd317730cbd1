"""Users: creation (by admins), profile changes, deactivation, notification preferences."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth import repository as auth_repo
from opsflow.auth.permissions import Permission, reach_of, require_reach
from opsflow.auth.principal import Principal
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.errors import (
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    ValidationFailed,
)
from opsflow.events.changes import record_change
from opsflow.kit.changes import field_changes
from opsflow.kit.jsonable import to_jsonable
from opsflow.kit.validation import Password
from opsflow.models.enums import ActorType, Role
from opsflow.models.notification_preference import NotificationPreference
from opsflow.models.team import Team
from opsflow.models.user import User
from opsflow.users import repository
from opsflow.users.schemas import NotificationPreferenceItem, UserCreate, UserUpdate

SELF_EDITABLE = {"email", "full_name", "password", "current_password"}


def user_state(user: User) -> dict[str, Any]:
    return {
        "email": user.email,
        "username": user.username,
        "full_name": user.full_name,
        "role": user.role,
        "team_id": user.team_id,
        "is_active": user.is_active,
    }


def _record(
    session: AsyncSession,
    actor: Principal,
    user: User,
    action: str,
    event_type: str,
    now: Any,
    **audit_fields: Any,
) -> None:
    record_change(
        session,
        actor,
        entity_type="user",
        entity_id=user.id,
        action=action,
        event_type=event_type,
        payload={"user": {"id": user.id, **user_state(user)}},
        now=now,
        **audit_fields,
    )


async def _check_team(session: AsyncSession, team_id: uuid.UUID | None) -> None:
    if team_id is not None and await session.get(Team, team_id) is None:
        raise ValidationFailed(
            details=[{"field": "team_id", "message": f"team {team_id} does not exist"}]
        )


async def create_user(
    session: AsyncSession,
    ctx: AppContext,
    actor: Principal,
    data: UserCreate,
    *,
    hashed_password: str | None = None,
) -> User:
    """Create a user. The password is hashed first, before this unit of work touches the
    database (pass `hashed_password` when the caller hashed it earlier still)."""
    hashed = hashed_password or await ctx.passwords.hash(data.password)
    taken = await repository.exists_with(session, email=data.email, username=data.username)
    if taken:
        raise Conflict(
            f"A user with this {' and '.join(taken)} already exists",
            details=[{"field": f, "message": "already taken"} for f in taken],
        )
    await _check_team(session, data.team_id)
    now = ctx.clock.now()
    user = User(
        id=uuid.uuid4(),
        email=data.email.lower(),
        username=data.username.lower(),
        full_name=data.full_name,
        hashed_password=hashed,
        role=data.role.value,
        team_id=data.team_id,
        is_active=True,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    await session.flush()
    _record(session, actor, user, "USER_CREATED", "user.created", now, new_state=user_state(user))
    return user


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await repository.get(session, user_id)
    if user is None:
        raise NotFound("user", user_id)
    return user


async def _new_password_hash(
    ctx: AppContext, actor: Principal, user_id: uuid.UUID, fields: dict[str, Any]
) -> tuple[str, str | None]:
    """Hash a new password, with no transaction open (see :func:`update_user`).

    Changing one's own password, whatever one's role, needs the current password: a stolen
    access token alone must not be enough to lock the owner out. Wrong current passwords
    count against the account's login limit. An admin resetting someone else's password
    needs no current password. Returns the new hash and, for an own change, the stored
    hash that was checked (the change applies only if it is still the stored one).
    """
    checked: str | None = None
    if actor.id == user_id:
        current = fields.get("current_password")
        if not current:
            raise ValidationFailed(
                "Changing your own password needs your current password",
                details=[{"field": "current_password", "message": "required"}],
            )
        async with ctx.read_sessions() as read:
            stored = await repository.get(read, user_id)
        if stored is None:
            raise NotFound("user", user_id)
        now = ctx.clock.now()
        throttle = ctx.login_throttle
        attempt = await throttle.begin(None, None, now)
        try:
            await throttle.add_account(attempt, user_id, now)
            valid = await ctx.passwords.verify(stored.hashed_password, current)
        except (RateLimited, ServiceUnavailable):
            await throttle.release(attempt)
            raise
        if not valid:
            raise ValidationFailed(
                "The current password is wrong",
                details=[{"field": "current_password", "message": "does not match"}],
            )
        await throttle.release(attempt)
        checked = stored.hashed_password
    return await ctx.passwords.hash(fields["password"]), checked


async def update_user(
    session: AsyncSession, ctx: AppContext, actor: Principal, user_id: uuid.UUID, data: UserUpdate
) -> User:
    """Edit a user. Admins may change everything; others only their own profile fields.

    A new password is checked and hashed before this unit of work first touches the
    database, so no transaction (on SQLite, no write lock) is open while hashing.
    """
    fields = data.model_dump(exclude_unset=True)
    is_admin = reach_of(actor, Permission.ADMINISTER) is not None
    if not is_admin:
        if actor.actor_type is ActorType.API:
            require_reach(actor, Permission.ADMINISTER)  # names the scope, not roles
        if actor.id != user_id:
            raise Forbidden("You may only edit your own profile", required_roles=["admin"])
        forbidden = sorted(set(fields) - SELF_EDITABLE)
        if forbidden:
            raise Forbidden(
                f"Only an admin may change: {', '.join(forbidden)}", required_roles=["admin"]
            )
    new_hash, checked_hash = (
        await _new_password_hash(ctx, actor, user_id, fields)
        if "password" in fields
        else (None, None)
    )
    user = await get_user(session, user_id)
    if checked_hash is not None and user.hashed_password != checked_hash:
        raise Conflict("The password was changed meanwhile; retry")
    fields.pop("current_password", None)
    if "email" in fields:
        fields["email"] = fields["email"].lower()
        if fields["email"] != user.email and await repository.email_taken(session, fields["email"]):
            raise Conflict(
                "A user with this email already exists",
                details=[{"field": "email", "message": "already taken"}],
            )
    if "team_id" in fields:
        await _check_team(session, fields["team_id"])
    if "role" in fields:
        fields["role"] = Role(fields["role"]).value
    if user.id == actor.id and (
        fields.get("is_active") is False or fields.get("role", user.role) != user.role
    ):
        raise Conflict("You cannot deactivate yourself or change your own role")
    before = user_state(user)
    fields.pop("password", None)
    for key, value in fields.items():
        setattr(user, key, value)
    now = ctx.clock.now()
    changes = field_changes(to_jsonable(before), to_jsonable(user_state(user)))
    if new_hash is not None:
        user.hashed_password = new_hash
        changes["password"] = {"from": "***", "to": "***"}
        await auth_repo.revoke_sessions_of_user(
            session, user.id, now=now, reason="password_changed"
        )
    if not changes:
        return user
    user.updated_at = now
    if user.is_active is False and before["is_active"]:
        await auth_repo.revoke_sessions_of_user(session, user.id, now=now, reason="deactivated")
    await session.flush()
    _record(session, actor, user, "USER_UPDATED", "user.updated", now, changes=changes)
    return user


async def deactivate_user(
    session: AsyncSession, ctx: AppContext, actor: Principal, user_id: uuid.UUID
) -> User:
    user = await get_user(session, user_id)
    if user.id == actor.id:
        raise Conflict("You cannot deactivate yourself")
    if not user.is_active:
        return user
    now = ctx.clock.now()
    user.is_active = False
    user.updated_at = now
    await auth_repo.revoke_sessions_of_user(session, user.id, now=now, reason="deactivated")
    await session.flush()
    _record(
        session,
        actor,
        user,
        "USER_DEACTIVATED",
        "user.deactivated",
        now,
        changes={"is_active": {"from": True, "to": False}},
    )
    return user


async def get_preferences(
    session: AsyncSession, user_id: uuid.UUID
) -> list[NotificationPreference]:
    return await repository.preferences(session, user_id)


async def put_preferences(
    session: AsyncSession,
    ctx: AppContext,
    actor: Principal,
    items: list[NotificationPreferenceItem],
) -> list[NotificationPreference]:
    """Replace the caller's preferences: channels not listed go back to the defaults."""
    if actor.user_id is None:
        raise Forbidden("Only users have notification preferences")
    channels = [item.channel for item in items]
    if len(set(channels)) != len(channels):
        raise ValidationFailed(details=[{"field": "preferences", "message": "duplicate channel"}])
    now = ctx.clock.now()
    existing = {p.channel: p for p in await get_preferences(session, actor.user_id)}
    before = {c: _pref_state(p) for c, p in existing.items()}
    for channel, pref in existing.items():
        if channel not in channels:
            await session.delete(pref)
    for item in items:
        found = existing.get(item.channel)
        pref = found or NotificationPreference(
            id=uuid.uuid4(),
            user_id=actor.user_id,
            channel=item.channel.value,
            created_at=now,
            updated_at=now,
        )
        if found is None:
            session.add(pref)
        for key, value in item.model_dump(exclude={"channel"}).items():
            setattr(pref, key, value)
        pref.updated_at = now
    await session.flush()
    after = {p.channel: _pref_state(p) for p in await get_preferences(session, actor.user_id)}
    changes = field_changes(before, after)
    if changes:
        record_change(
            session,
            actor,
            entity_type="user",
            entity_id=actor.user_id,
            action="NOTIFICATION_PREFERENCES_UPDATED",
            event_type="user.notification_preferences_updated",
            payload={"user_id": actor.user_id, "preferences": after},
            now=now,
            changes=changes,
        )
    return await get_preferences(session, actor.user_id)


def _pref_state(pref: NotificationPreference) -> dict[str, Any]:
    return {
        "enabled": pref.enabled,
        "address": pref.address,
        "quiet_hours_start": pref.quiet_hours_start,
        "quiet_hours_end": pref.quiet_hours_end,
        "timezone": pref.timezone,
    }


async def create_admin(ctx: AppContext, *, username: str, email: str, password: str) -> User:
    """Create an admin from the CLI or at first start; audited as done by the system."""
    check_password(password)
    async with unit_of_work(ctx.sessions) as session:
        data = UserCreate(
            username=username,
            email=email,
            password=password,
            role=Role.ADMIN,
            full_name="Administrator",
        )
        return await create_user(session, ctx, Principal.system("bootstrap"), data)


_PASSWORD = TypeAdapter(Password)


def check_password(password: str, field: str = "password") -> str:
    """The password if it is acceptable, else a ValidationFailed naming what is wrong."""
    try:
        return _PASSWORD.validate_python(password)
    except PydanticValidationError as exc:
        problems = []
        for error in exc.errors():
            if error["type"] == "string_too_short":
                message = f"must be at least {error['ctx']['min_length']} characters"
            elif error["type"] == "string_too_long":
                message = f"must be at most {error['ctx']['max_length']} characters"
            else:
                message = str(error["msg"]).removeprefix("Value error, ")
            problems.append({"field": field, "message": message})
        raise ValidationFailed("The password is not acceptable", details=problems) from None


async def reset_password(ctx: AppContext, *, login: str, password: str) -> User:
    """Set a user's password from the server's command line (a lost admin password): ends
    every session of that user and is audited as ``USER_PASSWORD_RESET`` by the system
    actor ``cli``. The user stays as active or inactive as they were."""
    check_password(password)
    async with unit_of_work(ctx.sessions) as session:
        user = await repository.by_login(session, login)
        if user is None:
            raise ValidationFailed(
                f"No user with the username or e-mail {login!r}",
                details=[{"field": "login", "message": "no such user"}],
            )
        now = ctx.clock.now()
        user.hashed_password = await ctx.passwords.hash(password)
        user.updated_at = now
        await auth_repo.revoke_sessions_of_user(session, user.id, now=now, reason="password_reset")
        await session.flush()
        _record(
            session,
            Principal.system("cli"),
            user,
            "USER_PASSWORD_RESET",
            "user.password_reset",
            now,
            changes={"password": {"from": "***", "to": "***"}},
        )
        return user


async def bootstrap_admin(ctx: AppContext) -> str | None:
    """On an empty database, create the first admin.

    Uses `OPSFLOW_ADMIN_PASSWORD` when set, otherwise generates a password and prints it
    once. Returns the generated password, if one was generated.
    """
    async with ctx.sessions() as session:
        if await repository.count(session) > 0:
            return None
    settings = ctx.settings
    generated = None if settings.admin_password else secrets.token_urlsafe(18)
    password = settings.admin_password or generated or ""
    try:
        await create_admin(
            ctx, username=settings.admin_username, email=settings.admin_email, password=password
        )
    except (Conflict, IntegrityError):
        return None  # another process bootstrapped at the same moment
    if generated:
        print(
            f"\n  OpsFlow created the admin account '{settings.admin_username}'.\n"
            f"  Generated password (shown only now): {generated}\n"
            "  Set OPSFLOW_ADMIN_PASSWORD to choose it yourself.\n",
            flush=True,
        )
    return generated


# Reads with no rule beyond their query: the repository's functions, as this service's API
# (endpoints call services only).
search = repository.search
