from __future__ import annotations

import base64
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response, status
from pydantic import ValidationError

from opsflow.auth import service
from opsflow.auth.deps import CurrentPrincipal, require
from opsflow.auth.permissions import Permission, granted_permissions
from opsflow.auth.principal import Principal
from opsflow.auth.schemas import (
    ApiClientCreate,
    ApiClientCreated,
    ApiClientRead,
    ClientMeResponse,
    LoginRequest,
    LoginUser,
    LogoutRequest,
    MeResponse,
    RefreshRequest,
    RevokeRequest,
    TokenResponse,
)
from opsflow.deps import ContextDep, RequestMetaDep, SessionDep
from opsflow.errors import (
    Forbidden,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
    declares,
)
from opsflow.idempotency.deps import Idempotent, IdempotentWithheld
from opsflow.kit.validation import LoginText, Reason, SecretText, Word
from opsflow.models.enums import ActorType
from opsflow.users import service as users_service
from opsflow.users.schemas import UserCreate, UserRead

router = APIRouter(prefix="/auth", tags=["auth"])
clients_router = APIRouter(prefix="/api-clients", tags=["auth"])

Admin = Annotated[Principal, Depends(require(Permission.ADMINISTER))]


@declares(RateLimited)
async def _login_rate(request: Request, context: ContextDep, meta: RequestMetaDep) -> None:
    """The login endpoints' own request limit, per client address (on top of the failed
    attempts the login throttle counts)."""
    await context.rate_limiter.for_login(request.scope, meta.ip_address)


LoginRate = [Depends(_login_rate)]


def _token_response(issued: service.IssuedTokens) -> TokenResponse:
    return TokenResponse(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
        scope=issued.scope,
        user=LoginUser.model_validate(issued.user) if issued.user else None,
    )


async def _hash_new_password(request: Request, context: ContextDep, _: Admin) -> str | None:
    """Hash the new user's password once the caller is known to be an admin, but before
    the Idempotency-Key claim opens the request's transaction: no transaction stays open
    while hashing. An invalid body is left to the endpoint's own validation."""
    try:
        password = UserCreate.model_validate_json(await request.body()).password
    except ValidationError:
        return None
    return await context.passwords.hash(password)


PreHashed = Annotated[str | None, Depends(_hash_new_password)]


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserRead)
async def register(
    body: UserCreate,
    hashed_password: PreHashed,
    session: SessionDep,
    context: ContextDep,
    actor: Admin,
    _: Idempotent,
) -> UserRead:
    user = await users_service.create_user(
        session, context, actor, body, hashed_password=hashed_password
    )
    return UserRead.model_validate(user)


# Login and the token grants take no request-wide session: the service keeps every
# transaction short and closed while a password or secret is hashed.
@router.post(
    "/login",
    response_model=TokenResponse,
    response_model_exclude_none=True,
    dependencies=LoginRate,
)
@declares(Unauthorized, RateLimited, ServiceUnavailable)
async def login(body: LoginRequest, context: ContextDep, meta: RequestMetaDep) -> TokenResponse:
    issued = await service.login(context, body.login, body.password, meta)
    return _token_response(issued)


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    """RFC 7617 credentials: base64 of UTF-8 `client_id:secret`; anything else is a 401."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    malformed = Unauthorized("Malformed Basic credentials", oauth_error="invalid_client")
    try:
        decoded = base64.b64decode(header[6:].strip().encode("ascii"), validate=True).decode()
    except (ValueError, UnicodeError) as exc:  # binascii.Error is a ValueError
        raise malformed from exc
    client_id, colon, secret = decoded.partition(":")
    if not colon or not client_id or "\x00" in decoded:
        raise malformed
    return client_id, secret


@router.post(
    "/token",
    response_model=TokenResponse,
    response_model_exclude_none=True,
    dependencies=LoginRate,
)
@declares(Unauthorized, RateLimited, ServiceUnavailable)
async def token(
    request: Request,
    context: ContextDep,
    meta: RequestMetaDep,
    grant_type: Annotated[Word, Form()],
    username: Annotated[LoginText | None, Form()] = None,
    password: Annotated[SecretText | None, Form()] = None,
    client_id: Annotated[Word | None, Form()] = None,
    client_secret: Annotated[SecretText | None, Form()] = None,
    scope: Annotated[Reason | None, Form()] = None,
) -> TokenResponse:
    """OAuth2 token endpoint: `password` grant (the docs' Authorize button) and
    `client_credentials` for API clients (credentials in the form or HTTP Basic)."""
    if grant_type == "password":
        if not username or not password:
            raise ValidationFailed(
                details=[{"field": "username", "message": "username and password are required"}],
                oauth_error="invalid_request",
            )
        return _token_response(await service.login(context, username, password, meta))
    if grant_type == "client_credentials":
        basic = _basic_credentials(request)
        cid, secret = basic if basic else (client_id, client_secret)
        if not cid or not secret:
            raise Unauthorized("Client credentials required", oauth_error="invalid_client")
        scopes = tuple(sorted(set((scope or "").split())))
        issued = await service.client_credentials(context, cid, secret, scopes, meta)
        return _token_response(issued)
    raise ValidationFailed(
        "Unsupported grant_type",
        details=[
            {"field": "grant_type", "message": "Must be one of: password, client_credentials"}
        ],
        oauth_error="unsupported_grant_type",
    )


@router.post(
    "/refresh",
    response_model=TokenResponse,
    response_model_exclude_none=True,
    dependencies=LoginRate,
)
@declares(Unauthorized, RateLimited)
async def refresh(
    body: RefreshRequest, session: SessionDep, context: ContextDep, meta: RequestMetaDep
) -> TokenResponse:
    issued = await service.refresh(session, context, body.refresh_token, meta)
    response = _token_response(issued)
    response.user = None
    return response


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def logout(
    session: SessionDep,
    context: ContextDep,
    principal: CurrentPrincipal,
    body: LogoutRequest | None = None,
) -> Response:
    await service.logout(session, context, principal, body.refresh_token if body else None)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/revoke", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
@declares(Forbidden, NotFound)
async def revoke(
    body: RevokeRequest, session: SessionDep, context: ContextDep, principal: CurrentPrincipal
) -> Response:
    await service.revoke(session, context, principal, body.token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=MeResponse | ClientMeResponse)
@declares(NotFound)
async def me(principal: CurrentPrincipal, session: SessionDep) -> MeResponse | ClientMeResponse:
    permissions = granted_permissions(principal)
    if principal.actor_type is ActorType.API:
        client = await service.get_client(session, principal.id)
        if client is None:
            raise NotFound("api_client", principal.id)
        return ClientMeResponse(
            id=client.id,
            client_id=client.client_id,
            name=client.name,
            scopes=sorted(s.value for s in principal.scopes),
            permissions=permissions,
        )
    user = await users_service.get_user(session, principal.id)
    return MeResponse(
        **UserRead.model_validate(user).model_dump(),
        permissions=permissions,
        session_id=principal.session_id,
    )


@clients_router.get("", response_model=list[ApiClientRead])
async def list_clients(session: SessionDep, _: Admin) -> list[ApiClientRead]:
    return [ApiClientRead.model_validate(c) for c in await service.list_clients(session)]


# Idempotent by key, but the answer (it holds the secret) is never stored: a replay answers
# 409 with the client's Location.
@clients_router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiClientCreated)
async def create_client(
    body: ApiClientCreate,
    session: SessionDep,
    context: ContextDep,
    actor: Admin,
    response: Response,
    _: IdempotentWithheld,
) -> ApiClientCreated:
    client, secret = await service.create_client(session, context, actor, body.name, body.scopes)
    response.headers["Location"] = f"/api/v1/api-clients/{client.id}"
    return ApiClientCreated(
        **ApiClientRead.model_validate(client).model_dump(), client_secret=secret
    )


# The path names the client's `id`; `api_client_id`, not `client_id`, which is the OAuth2
# client identifier of the same client.
@clients_router.delete(
    "/{api_client_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response
)
async def delete_client(
    api_client_id: uuid.UUID, session: SessionDep, context: ContextDep, actor: Admin
) -> Response:
    await service.revoke_client(session, context, actor, api_client_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
