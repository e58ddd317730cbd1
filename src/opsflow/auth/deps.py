"""Authentication and authorisation dependencies."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from fastapi.security.utils import get_authorization_scheme_param

from opsflow.auth import service
from opsflow.auth.permissions import Permission, require_reach
from opsflow.auth.principal import Principal
from opsflow.context import AppContext
from opsflow.deps import request_meta
from opsflow.errors import Forbidden, RateLimited, Unauthorized, declares
from opsflow.routing import inline

# auto_error=False: a missing token is reported in OpsFlow's envelope, not FastAPI's.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def bearer_token(request: Request) -> str | None:
    """What `oauth2_scheme` answers: the token of an `Authorization: Bearer` header."""
    authorization = request.headers.get("Authorization")
    scheme, token = get_authorization_scheme_param(authorization)
    if not authorization or scheme.lower() != "bearer":
        return None
    return token


# Declared for the document (the security scheme of each operation); a flat route reads
# the header where a dependency asks for the token, without FastAPI solving the scheme.
inline(oauth2_scheme, bearer_token)


async def _authenticate(request: Request, token: str | None) -> Principal:
    """The caller of this request, authenticated and counted by the rate limiter once
    however many of the request's dependencies ask (`CurrentPrincipal` beside a
    permission check)."""
    principal: Principal | None = request.scope.get(_PRINCIPAL)
    if principal is not None:
        return principal
    # The context and the request's meta read here, not as dependencies of their own: a
    # dependency FastAPI solves costs bookkeeping on every authenticated request.
    context: AppContext = request.app.state.context
    if not token:
        raise Unauthorized("Authentication required")
    if len(token) > 4096:
        raise Unauthorized("Invalid or expired token")
    # Its own short read-only unit of work (when the cache cannot answer), not the
    # request's: the request's transaction (on SQLite, its write lock) then begins only
    # when the endpoint first needs the database, which lets work such as password hashing
    # happen before it.
    principal = await service.authenticate(context, token, request_meta(request))
    request.state.principal = principal
    await context.rate_limiter.for_principal(request.scope, principal)
    request.scope[_PRINCIPAL] = principal
    return principal


_PRINCIPAL = "opsflow.principal"
Token = Annotated[str | None, Depends(oauth2_scheme)]


@declares(Unauthorized, RateLimited)
async def get_principal(request: Request, token: Token) -> Principal:
    return await _authenticate(request, token)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require(permission: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Dependency: the caller, provided its role (or scopes) hold `permission` at all.

    Reaches narrower than "all" (own team, assignee, own) are checked by the service
    once it has loaded the row. It authenticates the caller itself rather than through
    `CurrentPrincipal`: one dependency fewer for FastAPI to solve on most requests.
    """

    @declares(Forbidden, Unauthorized, RateLimited)
    async def _check(request: Request, token: Token) -> Principal:
        principal = await _authenticate(request, token)
        require_reach(principal, permission)
        return principal

    _check.__name__ = f"require_{permission.value}"
    return _check
