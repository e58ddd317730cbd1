"""The OpenAPI document, with the error answers every operation can give.

FastAPI only knows the success response and its own 422. OpsFlow answers validation
failures with 400 and every error in one envelope, so the document is completed here from
what each route is made of:

* the errors its endpoint and dependencies declare with :func:`opsflow.errors.declares`
  (authentication → 401, a permission check → 403, `Idempotency-Key` → 409/422,
  `If-Match` → 412, the login throttle → 429/503, ...);
* its shape: any parameter or body can be invalid (400), a path parameter names a row
  that may not exist (404), a body may exceed the size limit (413), and a write may meet
  a concurrent one (409).

Each status is documented once per operation with the envelope schema and the error codes
it carries, taken from the error classes themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field

from opsflow.errors import (
    AppError,
    Conflict,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)

ENVELOPE = "ErrorEnvelope"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    field: str | None = Field(None, description="the input the problem is about")
    message: str | None = None


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="machine-readable error code, e.g. VALIDATION_ERROR")
    message: str
    details: list[ErrorDetail] = Field(
        default_factory=list, description="one entry per invalid input (validation errors)"
    )
    timestamp: str = Field(description="when the error was answered (UTC, ISO 8601)")
    request_id: str | None = Field(description="the X-Request-ID of the request")


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for child in dependant.dependencies:
        yield from _dependants(child)


def _has_parameters(dependant: Dependant) -> bool:
    return any(
        d.path_params or d.query_params or d.header_params or d.cookie_params or d.body_params
        for d in _dependants(dependant)
    )


def route_errors(route: Any) -> list[type[AppError]]:
    """Every error class an operation can answer with, in a stable order."""
    errors: list[type[AppError]] = []
    for dependant in _dependants(route.dependant):
        errors.extend(getattr(dependant.call, "__opsflow_errors__", ()))
    if _has_parameters(route.dependant):
        errors.append(ValidationFailed)
    if any(d.path_params for d in _dependants(route.dependant)):
        errors.append(NotFound)
    if route.body_field is not None or "requestBody" in (route.openapi_extra or {}):
        errors.append(PayloadTooLarge)
    if WRITE_METHODS & set(route.methods or ()):
        errors.append(Conflict)
    return list(dict.fromkeys(errors))


def _response(errors: list[type[AppError]]) -> dict[str, Any]:
    lines = "\n".join(f"- `{e.code}`: {e.default_message}" for e in errors)
    return {
        "description": f"{HTTPStatus(errors[0].status_code).phrase}\n\n{lines}",
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ENVELOPE}"}}},
    }


def error_responses(errors: list[type[AppError]]) -> dict[str, dict[str, Any]]:
    """The `responses` entries for these errors, one per status code."""
    by_status: dict[int, list[type[AppError]]] = {}
    for error in errors:
        codes = by_status.setdefault(error.status_code, [])
        if all(e.code != error.code for e in codes):
            codes.append(error)
    return {str(status): _response(by_status[status]) for status in sorted(by_status)}


def build(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = document.setdefault("components", {}).setdefault("schemas", {})
    envelope_schema = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(envelope_schema.pop("$defs", {}))
    components[ENVELOPE] = envelope_schema
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for route in _api_routes(app):
        path = document["paths"].get(route.path_format)
        if path is None:
            continue
        for method in route.methods or ():
            operation = path.get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, response in error_responses(route_errors(route)).items():
                responses.setdefault(status, response)
    return document


def _api_routes(app: FastAPI) -> Iterator[Any]:
    """The operations as served (with their prefixes and router-level dependencies)."""
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.include_in_schema:
            yield context


def install(app: FastAPI) -> None:
    """Serve the completed document (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
