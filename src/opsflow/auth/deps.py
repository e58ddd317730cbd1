"""Authentication and authorisation dependencies."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from opsflow.auth import service
from opsflow.auth.permissions import Permission, require_reach
from opsflow.auth.principal import Principal
from opsflow.context import AppContext
from opsflow.deps import request_meta
from opsflow.errors import Forbidden, RateLimited, Unauthorized, declares

# auto_error=False: a missing token is reported in OpsFlow's envelope, not FastAPI's.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


@declares(Unauthorized, RateLimited)
async def get_principal(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal:
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
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require(permission: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Dependency: the caller, provided its role (or scopes) hold `permission` at all.

    Reaches narrower than "all" (own team, assignee, own) are checked by the service
    once it has loaded the row.
    """

    @declares(Forbidden)
    async def _check(principal: CurrentPrincipal) -> Principal:
        require_reach(principal, permission)
        return principal

    _check.__name__ = f"require_{permission.value}"
    return _check
