"""The OpenAPI document states what the server does: every error answer an operation can
give, with the envelope schema, and the rules the server enforces on its inputs."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import available_timezones

import httpx
import pytest

from opsflow.escalation.schemas import TARGET_PATTERN
from opsflow.tasks.endpoints import IF_MATCH_PATTERN

ENVELOPE_REF = "#/components/schemas/ErrorEnvelope"
V1 = "/api/v1"


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_every_error_answer_is_declared_with_the_envelope(document: dict[str, Any]) -> None:
    failures = []
    for method, path, operation in operations(document):
        responses = operation["responses"]
        secured = bool(operation.get("security"))
        has_input = bool(operation.get("parameters") or operation.get("requestBody"))
        expected = set()
        if has_input:
            expected.add("400")
        if secured:
            expected |= {"401"}
        if "{" in path:
            expected.add("404")
        if operation.get("requestBody"):
            expected.add("413")
        if method in {"POST", "PUT", "PATCH", "DELETE"}:
            expected.add("409")
        missing = expected - set(responses)
        if missing:
            failures.append(f"{method} {path}: missing {sorted(missing)}")
        for status, response in responses.items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                if schema != {"$ref": ENVELOPE_REF}:
                    failures.append(f"{method} {path} {status}: {schema}")
    assert not failures, "\n".join(failures)


def test_validation_errors_are_400_not_fastapis_422(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        if "422" in operation["responses"]:
            # The 422s of the API: an Idempotency-Key reused with another request, and an
            # assembled upload that does not match its declared size and sha256.
            description = operation["responses"]["422"]["description"]
            assert "IDEMPOTENCY_KEY_REUSED" in description or (
                "CHECKSUM_MISMATCH" in description and path.endswith("/complete")
            ), (method, path)
    assert "HTTPValidationError" not in document["components"]["schemas"]


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("POST", f"{V1}/auth/login", {"401", "429"}),
        ("POST", f"{V1}/auth/token", {"401", "429"}),
        ("GET", f"{V1}/audit-logs", {"401", "403"}),
        ("PATCH", f"{V1}/tasks/{{task_id}}", {"403", "404", "409", "412"}),
        ("POST", f"{V1}/tasks", {"409", "422"}),
    ],
)
def test_specific_answers(
    document: dict[str, Any], method: str, path: str, statuses: set[str]
) -> None:
    assert statuses <= set(document["paths"][path][method.lower()]["responses"])


def test_the_idempotency_race_has_its_own_documented_code(document: dict[str, Any]) -> None:
    conflict = document["paths"][f"{V1}/tasks"]["post"]["responses"]["409"]["description"]
    assert "IDEMPOTENCY_KEY_IN_USE" in conflict


def test_the_envelope_schema(document: dict[str, Any]) -> None:
    envelope = _resolve(document, {"$ref": ENVELOPE_REF})
    assert envelope["required"] == ["error"]
    body = _resolve(document, envelope["properties"]["error"])
    assert set(body["required"]) == {"code", "message", "timestamp", "request_id"}


def _parameter(document: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    for parameter in document["paths"][path][method]["parameters"]:
        if parameter["name"] == name:
            return dict(parameter["schema"])
    raise AssertionError(f"{method} {path} has no parameter {name}")


def test_enforced_input_rules_are_in_the_schema(document: dict[str, Any]) -> None:
    if_match = _parameter(document, f"{V1}/tasks/{{task_id}}", "patch", "if-match")
    assert if_match["pattern"] == IF_MATCH_PATTERN
    status = _parameter(document, f"{V1}/tasks", "get", "status")
    assert status["items"]["enum"][:2] == ["CREATED", "ASSIGNED"]
    level = _parameter(document, f"{V1}/escalation-events", "get", "level")
    assert level["anyOf"][0]["minimum"] == 1
    assert level["anyOf"][0]["maximum"] == 999_999
    created_after = _parameter(document, f"{V1}/tasks", "get", "created_after")
    assert created_after["anyOf"][0]["pattern"].startswith("^(19|[2-8][0-9])")

    schemas = document["components"]["schemas"]
    step = schemas["Step"]["properties"]["targets"]["items"]
    assert step["pattern"] == TARGET_PATTERN
    zone = schemas["CalendarCreate"]["properties"]["timezone"]
    assert set(zone["enum"]) == available_timezones()


@pytest.mark.parametrize(
    ("model", "nullable", "refuses_null"),
    [
        ("TaskUpdate", {"description", "team_id", "service"}, {"title", "priority", "tags"}),
        ("TeamUpdate", {"description", "lead_id"}, {"name", "is_active"}),
        ("UserUpdate", {"full_name", "team_id"}, {"email", "role", "is_active"}),
        ("WebhookUpdate", set(), {"name", "url", "is_active"}),
    ],
)
def test_fields_that_refuse_null_are_not_nullable(
    document: dict[str, Any], model: str, nullable: set[str], refuses_null: set[str]
) -> None:
    properties = document["components"]["schemas"][model]["properties"]

    def allows_null(field: dict[str, Any]) -> bool:
        return {"type": "null"} in field.get("anyOf", []) or field.get("type") == "null"

    for name in nullable:
        assert allows_null(properties[name]), name
    for name in refuses_null:
        assert not allows_null(properties[name]), (name, properties[name])
        assert "default" not in properties[name]


@pytest.mark.parametrize(
    ("header", "accepted"),
    [("3", True), ('W/"3"', True), ("*", True), ("abc", False), ("W/*", False)],
)
def test_if_match_pattern_is_the_rule_the_server_applies(header: str, accepted: bool) -> None:
    assert bool(re.fullmatch(IF_MATCH_PATTERN, header)) is accepted


async def test_a_null_for_a_field_that_refuses_it_is_a_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = await client.post("/tasks", json={"title": "n"}, headers=admin_headers)
    response = await client.patch(
        f"/tasks/{created.json()['id']}", json={"title": None}, headers=admin_headers
    )
    assert response.status_code == 400, response.text


def test_the_flat_mount_documents_what_nested_routers_would() -> None:
    """The domain routers are mounted as one flat list of routes (cheaper to match): the
    operations, their parameters and answers are those `include_router` would give."""
    from fastapi import APIRouter, FastAPI
    from fastapi.openapi.utils import get_openapi

    from opsflow.app import API_PREFIX
    from opsflow.routing import mount_flat
    from opsflow.tasks.endpoints import router as tasks_router
    from opsflow.users.endpoints import router as users_router

    routers = (users_router, tasks_router)
    nested = FastAPI()
    api = APIRouter(prefix=API_PREFIX)
    for router in routers:
        api.include_router(router)
    nested.include_router(api)
    flat = FastAPI()
    mount_flat(flat, routers, prefix=API_PREFIX)

    def document(app: FastAPI) -> dict[str, Any]:
        return get_openapi(title="t", version="1", routes=app.routes)

    assert document(flat) == document(nested)
    assert [getattr(r, "path", None) for r in flat.routes][-3:] == [
        f"{API_PREFIX}{getattr(route, 'path', None)}" for route in tasks_router.routes[-3:]
    ]
