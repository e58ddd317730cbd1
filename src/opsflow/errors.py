"""Error hierarchy and the one envelope every error response uses.

Services raise these; a single set of handlers in :mod:`opsflow.app` renders them as::

    {"error": {"code", "message", "details"?, "timestamp", "request_id", ...extra}}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

F = TypeVar("F", bound=Callable[..., Any])


class AppError(Exception):
    status_code = 500
    code = "INTERNAL_ERROR"
    default_message = "An unexpected error occurred"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        keep_changes: bool = False,
        **extra: Any,
    ) -> None:
        self.message = message or self.default_message
        # The edge commits the unit of work even though the request fails (e.g. a reused
        # refresh token answers 401 *and* revokes its session).
        self.keep_changes = keep_changes
        self.details = list(details) if details is not None else None
        self.headers = dict(headers or {})
        self.extra = extra
        super().__init__(self.message)


class ValidationFailed(AppError):
    status_code = 400
    code = "VALIDATION_ERROR"
    default_message = "Invalid input data"


class Unauthorized(AppError):
    status_code = 401
    code = "UNAUTHORIZED"
    default_message = "Invalid or expired token"

    def __init__(
        self, message: str | None = None, *, keep_changes: bool = False, **extra: Any
    ) -> None:
        super().__init__(
            message, headers={"WWW-Authenticate": "Bearer"}, keep_changes=keep_changes, **extra
        )


class Forbidden(AppError):
    status_code = 403
    code = "FORBIDDEN"
    default_message = "Insufficient permissions to perform this action"

    def __init__(
        self,
        message: str | None = None,
        *,
        required_roles: Iterable[str] = (),
        **extra: Any,
    ) -> None:
        roles = list(required_roles)
        if roles:
            extra.setdefault("required_role", roles[0])
            extra.setdefault("allowed_roles", roles)
        super().__init__(message, **extra)


class NotFound(AppError):
    status_code = 404
    code = "NOT_FOUND"
    default_message = "Resource not found"

    def __init__(
        self, entity_type: str | None = None, entity_id: UUID | str | None = None, **extra: Any
    ) -> None:
        message = f"{entity_type.replace('_', ' ').capitalize()} not found" if entity_type else None
        if entity_type:
            extra["entity_type"] = entity_type
        if entity_id is not None:
            extra["entity_id"] = str(entity_id)
        super().__init__(message, **extra)


class InvalidTransition(AppError):
    status_code = 409
    code = "INVALID_TRANSITION"
    default_message = "Transition not allowed from the current status"


class MethodNotAllowed(AppError):
    """Declared where a path of the operation's shape may belong to another route (the
    answer itself comes from the 405 handler, with `Allow`)."""

    status_code = 405
    code = "METHOD_NOT_ALLOWED"
    default_message = "The path belongs to a route that does not serve this method"


class Conflict(AppError):
    status_code = 409
    code = "CONFLICT"
    default_message = "The request conflicts with the current state"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"
    default_message = "The request is too large"


class PreconditionFailed(AppError):
    status_code = 412
    code = "PRECONDITION_FAILED"
    default_message = "The resource has changed since it was read"


class RateLimited(AppError):
    status_code = 429
    code = "RATE_LIMITED"
    default_message = "Too many requests"


class ServiceUnavailable(AppError):
    """The server is too busy to take this request now; the client should retry later."""

    status_code = 503
    code = "SERVICE_UNAVAILABLE"
    default_message = "The server is busy; retry shortly"

    def __init__(self, message: str | None = None, *, retry_after_seconds: int = 1) -> None:
        super().__init__(
            message,
            headers={"Retry-After": str(retry_after_seconds)},
            retry_after_seconds=retry_after_seconds,
        )


def declares(*errors: type[AppError]) -> Callable[[F], F]:
    """Mark an endpoint or a dependency with the errors it may raise, so the OpenAPI document
    lists them on every operation that uses it (see :mod:`opsflow.openapi`)."""

    def mark(function: F) -> F:
        known: tuple[type[AppError], ...] = getattr(function, "__opsflow_errors__", ())
        function.__opsflow_errors__ = (*known, *errors)  # type: ignore[attr-defined]
        return function

    return mark


def envelope(
    *,
    code: str,
    message: str,
    request_id: str | None,
    details: Sequence[Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
    now: datetime,
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = list(details)
    for key, value in (extra or {}).items():
        if key not in body:
            body[key] = value
    stamp = now.astimezone(UTC)
    body["timestamp"] = stamp.isoformat().replace("+00:00", "Z")
    body["request_id"] = request_id
    return {"error": body}


def _field(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie", "form"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def _message(error: Mapping[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    if error.get("type") == "enum" and "expected" in ctx:
        options = str(ctx["expected"]).replace("'", "").replace(" or ", ", ")
        return f"Must be one of: {options}"
    if error.get("type") == "json_invalid":
        return "Malformed JSON body"
    if error.get("type") == "missing":
        return "Field required"
    message = str(error.get("msg", "Invalid value"))
    return message.removeprefix("Value error, ")


def validation_details(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic errors as the envelope's ``details``: field path, readable message, type."""
    return [
        {
            "field": "body" if e.get("type") == "json_invalid" else _field(e.get("loc", ())),
            "message": _message(e),
            "type": e.get("type"),
        }
        for e in errors
    ]


class InvalidSignature(AppError):
    status_code = 401
    code = "INVALID_SIGNATURE"
    default_message = "The request signature does not match"
