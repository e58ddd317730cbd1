"""Authentication: logins, rotating refresh tokens, API clients, bearer-token resolution."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth import repository
from opsflow.auth.principal import Principal, RequestMeta
from opsflow.auth.tokens import (
    AccessClaims,
    digest,
    new_client_id,
    new_client_secret,
    new_refresh_token,
)
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.errors import (
    Forbidden,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)
from opsflow.events.changes import record_change
from opsflow.models.auth import ApiClient, AuthSession, RefreshToken
from opsflow.models.enums import ActorType, Role, Scope
from opsflow.models.user import User
from opsflow.users import repository as users_repo


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str | None
    expires_in: int
    user: User | None = None
    scope: str | None = None


def user_principal(user: User, meta: RequestMeta, session_id: uuid.UUID | None) -> Principal:
    return Principal(
        actor_type=ActorType.USER,
        id=user.id,
        name=user.username,
        role=Role(user.role),
        team_id=user.team_id,
        session_id=session_id,
        meta=meta,
    )


def client_principal(client: ApiClient, meta: RequestMeta, scopes: tuple[str, ...]) -> Principal:
    granted = {Scope(s) for s in client.scopes if s in Scope.__members__.values()}
    effective = (
        frozenset(Scope(s) for s in scopes if s in granted) if scopes else frozenset(granted)
    )
    return Principal(
        actor_type=ActorType.API,
        id=client.id,
        name=f"client:{client.name}",
        scopes=effective,
        on_behalf_of=client.owner_id,
        meta=meta,
    )


async def _open_session(
    session: AsyncSession, ctx: AppContext, user: User, meta: RequestMeta
) -> IssuedTokens:
    now = ctx.clock.now()
    auth_session = AuthSession(
        id=uuid.uuid4(),
        user_id=user.id,
        created_at=now,
        expires_at=now + ctx.tokens.refresh_ttl,
        ip_address=meta.ip_address,
        user_agent=meta.user_agent,
    )
    session.add(auth_session)
    refresh = _add_refresh_token(session, auth_session, now, ctx)
    user.last_login_at = now
    await session.flush()
    _session_change(
        session, user_principal(user, meta, auth_session.id), auth_session, "USER_LOGGED_IN", now
    )
    return IssuedTokens(
        access_token=ctx.tokens.issue_access(
            subject=user.id, kind="user", now=now, session_id=auth_session.id
        ),
        refresh_token=refresh,
        expires_in=int(ctx.tokens.access_ttl.total_seconds()),
        user=user,
    )


def _add_refresh_token(
    session: AsyncSession, auth_session: AuthSession, now: datetime, ctx: AppContext
) -> str:
    token = new_refresh_token()
    session.add(
        RefreshToken(
            id=uuid.uuid4(),
            session_id=auth_session.id,
            token_hash=digest(token),
            created_at=now,
            expires_at=min(now + ctx.tokens.refresh_ttl, auth_session.expires_at),
        )
    )
    return token


async def login(ctx: AppContext, login_name: str, password: str, meta: RequestMeta) -> IssuedTokens:
    """Check a password and open a login session.

    The attempt is counted before the password is hashed, and the hash runs with no
    transaction open: the account is read in a short read-only unit of work, the hash is
    checked, and only a right password opens a (short) write unit of work. On SQLite no
    write lock is held while hashing, so a burst of logins cannot starve other writers.
    """
    now = ctx.clock.now()
    throttle = ctx.login_throttle
    attempt = await throttle.begin(login_name, meta.ip_address, now)
    try:
        async with ctx.read_sessions() as session:
            user = await users_repo.by_login(session, login_name)
        if user is not None:
            # Per account too, so switching between username and e-mail (or their case)
            # does not buy more attempts against the same account.
            await throttle.add_account(attempt, user.id, now)
        stored_hash = user.hashed_password if user else None
        valid = await ctx.passwords.verify(stored_hash, password)
    except (RateLimited, ServiceUnavailable, SQLAlchemyError):
        await throttle.release(attempt)  # refused before any password was tested
        raise
    if user is None or not valid:
        raise Unauthorized("Invalid username or password")
    await throttle.succeeded(attempt)
    if not user.is_active:
        raise Unauthorized("This account is deactivated")
    stale = ctx.passwords.needs_rehash(user.hashed_password)
    rehashed = await ctx.passwords.hash(password) if stale else None
    async with unit_of_work(ctx.sessions) as session:
        current = await users_repo.get(session, user.id)
        if current is None or current.hashed_password != stored_hash or not current.is_active:
            # Changed or deactivated while the password was being checked.
            raise Unauthorized("Invalid username or password")
        if rehashed is not None:
            current.hashed_password = rehashed
        return await _open_session(session, ctx, current, meta)


async def refresh(
    session: AsyncSession, ctx: AppContext, token: str, meta: RequestMeta
) -> IssuedTokens:
    now = ctx.clock.now()
    stored = await repository.refresh_token_by_hash(session, digest(token))
    if stored is None:
        raise Unauthorized("Invalid refresh token")
    auth_session = await repository.get_session(session, stored.session_id)
    if auth_session is None or auth_session.revoked_at is not None:
        raise Unauthorized("This session has been revoked")
    user = await users_repo.get(session, auth_session.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("This account is deactivated")
    if stored.rotated_at is not None:
        # A token that was already exchanged is presented again: it was stolen or replayed.
        # Kill the whole family (every token and access token issued from this login).
        actor = user_principal(user, meta, auth_session.id)
        await _revoke_session(session, auth_session, actor, now, "refresh_token_reuse")
        raise Unauthorized(
            "Refresh token reuse detected; the session has been revoked", keep_changes=True
        )
    if stored.expires_at <= now or auth_session.expires_at <= now:
        raise Unauthorized("Refresh token expired")
    stored.rotated_at = now
    new_token = _add_refresh_token(session, auth_session, now, ctx)
    await session.flush()
    return IssuedTokens(
        access_token=ctx.tokens.issue_access(
            subject=user.id, kind="user", now=now, session_id=auth_session.id
        ),
        refresh_token=new_token,
        expires_in=int(ctx.tokens.access_ttl.total_seconds()),
        user=user,
    )


async def _revoke_session(
    session: AsyncSession, auth_session: AuthSession, actor: Principal, now: datetime, reason: str
) -> None:
    if auth_session.revoked_at is not None:
        return
    auth_session.revoked_at = now
    auth_session.revoked_reason = reason
    _session_change(session, actor, auth_session, "SESSION_REVOKED", now)


def _session_change(
    session: AsyncSession, actor: Principal, auth_session: AuthSession, action: str, now: datetime
) -> None:
    """Logins and revocations: audited, and published so live connections can follow."""
    details = {"session_id": str(auth_session.id), "reason": auth_session.revoked_reason}
    record_change(
        session,
        actor,
        entity_type="user",
        entity_id=auth_session.user_id,
        action=action,
        event_type="user.session_opened" if action == "USER_LOGGED_IN" else "user.session_revoked",
        payload={"user_id": auth_session.user_id, **details},
        now=now,
        metadata={k: v for k, v in details.items() if v is not None},
    )


async def logout(
    session: AsyncSession, ctx: AppContext, principal: Principal, refresh_token: str | None
) -> None:
    now = ctx.clock.now()
    if principal.session_id is not None:
        current = await repository.get_session(session, principal.session_id)
        if current is not None:
            await _revoke_session(session, current, principal, now, "logout")
    if refresh_token:
        stored = await repository.refresh_token_by_hash(session, digest(refresh_token))
        if stored is not None:
            other = await repository.get_session(session, stored.session_id)
            if other is not None and other.user_id == principal.id:
                await _revoke_session(session, other, principal, now, "logout")


async def revoke(session: AsyncSession, ctx: AppContext, principal: Principal, token: str) -> None:
    """RFC 7009 style: revoke the session behind a refresh or access token.

    Unknown tokens are ignored (the answer is the same), and a caller may revoke only
    its own sessions unless it is an admin.
    """
    now = ctx.clock.now()
    target: AuthSession | None = None
    stored = await repository.refresh_token_by_hash(session, digest(token))
    if stored is not None:
        target = await repository.get_session(session, stored.session_id)
    else:
        try:
            claims = ctx.tokens.decode_access(token, now=now)
        except Unauthorized:
            return
        if claims.session_id is not None:
            target = await repository.get_session(session, claims.session_id)
    if target is None:
        return
    if target.user_id != principal.id and principal.role is not Role.ADMIN:
        raise Forbidden("You may revoke only your own tokens", required_roles=[Role.ADMIN.value])
    await _revoke_session(session, target, principal, now, "revoked")


async def client_credentials(
    ctx: AppContext,
    client_id: str,
    client_secret: str,
    requested_scopes: tuple[str, ...],
    meta: RequestMeta,
) -> IssuedTokens:
    """Exchange an API client's credentials for an access token.

    Like a login, the secret is checked with no transaction open."""
    now = ctx.clock.now()
    if "\x00" in client_id or "\x00" in client_secret:
        raise Unauthorized("Invalid client credentials", oauth_error="invalid_client")
    async with ctx.read_sessions() as session:
        client = await repository.client_by_client_id(session, client_id)
    valid = await ctx.passwords.verify(client.hashed_secret if client else None, client_secret)
    if client is None or not valid or client.revoked_at is not None:
        raise Unauthorized("Invalid client credentials", oauth_error="invalid_client")
    unknown = [s for s in requested_scopes if s not in client.scopes]
    if unknown:
        raise ValidationFailed(
            "Requested scopes exceed the client's grant",
            details=[{"field": "scope", "message": f"not granted: {' '.join(unknown)}"}],
            oauth_error="invalid_scope",
        )
    scopes = requested_scopes or tuple(client.scopes)
    async with unit_of_work(ctx.sessions) as session:
        if not await repository.touch_client(session, client.id, now):
            raise Unauthorized("Invalid client credentials", oauth_error="invalid_client")
    return IssuedTokens(
        access_token=ctx.tokens.issue_access(
            subject=client.id, kind="client", now=now, scopes=scopes
        ),
        refresh_token=None,
        expires_in=int(ctx.tokens.access_ttl.total_seconds()),
        scope=" ".join(scopes),
    )


async def resolve_bearer(
    session: AsyncSession, ctx: AppContext, token: str, meta: RequestMeta
) -> Principal:
    """Turn a bearer token into a principal, checking that nothing behind it was revoked.

    The signature and expiry are checked every time; what the database says about the
    user, session or client may come from `ctx.principals` (see auth/cache.py for how
    long, and how a revocation clears it).
    """
    claims, key = _claims(ctx, token)
    cached = ctx.principals.get(key)
    if cached is not None:
        return replace(cached, meta=meta)
    return await _resolve(session, ctx, claims, key, meta)


async def authenticate(ctx: AppContext, token: str, meta: RequestMeta) -> Principal:
    """:func:`resolve_bearer` in a read-only unit of work of its own, opened only when
    the cache cannot answer (opening and closing one costs about 0.1 ms of CPU, a few
    per cent of a whole read)."""
    claims, key = _claims(ctx, token)
    cached = ctx.principals.get(key)
    if cached is not None:
        return replace(cached, meta=meta)
    async with ctx.read_sessions() as session:
        return await _resolve(session, ctx, claims, key, meta)


def _claims(ctx: AppContext, token: str) -> tuple[AccessClaims, tuple[Any, ...]]:
    """The token's checked claims, and the cache key of the principal they name."""
    claims = ctx.tokens.decode_access(token, now=ctx.clock.now())
    return claims, (claims.kind, claims.subject, claims.session_id, claims.scopes)


async def _resolve(
    session: AsyncSession,
    ctx: AppContext,
    claims: AccessClaims,
    key: tuple[Any, ...],
    meta: RequestMeta,
) -> Principal:
    principal = await _principal_from_database(session, claims)
    ctx.principals.put(key, principal)
    return replace(principal, meta=meta)


async def _principal_from_database(session: AsyncSession, claims: AccessClaims) -> Principal:
    if claims.kind == "client":
        client = await repository.get_client(session, claims.subject)
        if client is None or client.revoked_at is not None:
            raise Unauthorized("This API client has been revoked")
        return client_principal(client, RequestMeta(), claims.scopes)
    user = await users_repo.get(session, claims.subject)
    if user is None or not user.is_active:
        raise Unauthorized("This account is deactivated")
    if claims.session_id is None:
        raise Unauthorized("Invalid or expired token")
    auth_session = await repository.get_session(session, claims.session_id)
    if (
        auth_session is None
        or auth_session.user_id != user.id
        or auth_session.revoked_at is not None
    ):
        raise Unauthorized("This session has been revoked")
    return user_principal(user, RequestMeta(), auth_session.id)


async def create_client(
    session: AsyncSession, ctx: AppContext, actor: Principal, name: str, scopes: list[Scope]
) -> tuple[ApiClient, str]:
    now = ctx.clock.now()
    secret = new_client_secret()
    client = ApiClient(
        id=uuid.uuid4(),
        client_id=new_client_id(),
        name=name,
        hashed_secret=await ctx.passwords.hash(secret),
        scopes=sorted({s.value for s in scopes}),
        owner_id=actor.user_id,
        created_at=now,
    )
    session.add(client)
    await session.flush()
    state = _client_state(client)
    record_change(
        session,
        actor,
        entity_type="api_client",
        entity_id=client.id,
        action="API_CLIENT_CREATED",
        event_type="api_client.created",
        payload=state,
        now=now,
        new_state=state,
    )
    return client, secret


async def revoke_client(
    session: AsyncSession, ctx: AppContext, actor: Principal, id_: uuid.UUID
) -> None:
    now = ctx.clock.now()
    client = await repository.get_client(session, id_)
    if client is None:
        raise NotFound("api_client", id_)
    if client.revoked_at is not None:
        return
    client.revoked_at = now
    record_change(
        session,
        actor,
        entity_type="api_client",
        entity_id=client.id,
        action="API_CLIENT_REVOKED",
        event_type="api_client.revoked",
        payload=_client_state(client),
        now=now,
        changes={"revoked_at": {"from": None, "to": now}},
    )


def _client_state(client: ApiClient) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "scopes": list(client.scopes),
        "owner_id": client.owner_id,
        "revoked_at": client.revoked_at,
    }


# Reads with no rule beyond their query: the repository's functions, as this service's API
# (endpoints call services only).
get_client = repository.get_client
list_clients = repository.list_clients
