"""Strict validation: hostile and malformed input is answered with a 400
VALIDATION_ERROR (or 413) envelope — never a 500, never a partial write."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import assert_error as assert_envelope
from tests.factories import USER_PASSWORD, make_user


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The shared envelope check, plus: stamped by the settable clock, which stays put here."""
    error = assert_envelope(response, status, code)
    assert error["timestamp"] == "2026-01-27T10:30:00Z"
    return error


UUID_OK = "00000000-0000-4000-8000-000000000000"
PRIORITY_MESSAGE = "Must be one of: LOW, MEDIUM, HIGH, CRITICAL"
MIB = 1024 * 1024


def assert_400(response: httpx.Response, field: str | None = None) -> dict[str, Any]:
    error = assert_error(response, 400, "VALIDATION_ERROR")
    if field is not None:
        fields = [d["field"] for d in error.get("details") or []]
        assert field in fields, error
    return error


def raw_json(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Content-Type": "application/json"}


async def task_count(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get("/tasks", headers=headers)
    assert response.status_code == 200, response.text
    return int(response.json()["pagination"]["total_items"])


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"n": value}
    return value


# --- task bodies ----------------------------------------------------------------------------


TASK_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("nul-title", {"title": "a\x00b"}, "title"),
    ("nul-title-only", {"title": "\x00"}, "title"),
    ("nul-description", {"title": "ok", "description": "line\x00"}, "description"),
    ("nul-service", {"title": "ok", "service": "api\x00gw"}, "service"),
    ("nul-tag", {"title": "ok", "tags": ["fine", "b\x00d"]}, "tags.1"),
    ("nul-metadata-key", {"title": "ok", "metadata": {"k\x00": "v"}}, "metadata"),
    ("nul-metadata-value", {"title": "ok", "metadata": {"k": "v\x00"}}, "metadata"),
    ("nul-metadata-deep", {"title": "ok", "metadata": {"a": [{"b": ["\x00"]}]}}, "metadata"),
    ("nul-metadata-deep-key", {"title": "ok", "metadata": {"a": {"\x00": 1}}}, "metadata"),
    ("nul-unknown-key", {"title": "ok", "\x00": 1}, "\x00"),
    ("title-501", {"title": "x" * 501}, "title"),
    ("title-huge", {"title": "x" * 100_000}, "title"),
    ("title-empty", {"title": ""}, "title"),
    ("title-blank", {"title": "   \t\n "}, "title"),
    ("title-missing", {"priority": "LOW"}, "title"),
    ("title-int", {"title": 123}, "title"),
    ("title-null", {"title": None}, "title"),
    ("title-list", {"title": ["a"]}, "title"),
    ("title-object", {"title": {"a": 1}}, "title"),
    ("title-bool", {"title": True}, "title"),
    ("description-20001", {"title": "ok", "description": "d" * 20_001}, "description"),
    ("service-256", {"title": "ok", "service": "s" * 256}, "service"),
    ("priority-URGENT", {"title": "ok", "priority": "URGENT"}, "priority"),
    ("priority-lowercase", {"title": "ok", "priority": "high"}, "priority"),
    ("priority-int", {"title": "ok", "priority": 1}, "priority"),
    ("priority-null", {"title": "ok", "priority": None}, "priority"),
    ("task-type-BUG", {"title": "ok", "task_type": "BUG"}, "task_type"),
    ("tier-GOLD", {"title": "ok", "customer_tier": "GOLD"}, "customer_tier"),
    ("assigned-to-text", {"title": "ok", "assigned_to": "not-a-uuid"}, "assigned_to"),
    ("assigned-to-int", {"title": "ok", "assigned_to": 12345}, "assigned_to"),
    ("assigned-to-short", {"title": "ok", "assigned_to": UUID_OK[:-1]}, "assigned_to"),
    ("assigned-to-nul", {"title": "ok", "assigned_to": UUID_OK[:-1] + "\x00"}, "assigned_to"),
    ("extra-assignee", {"title": "ok", "additional_assignees": ["x"]}, "additional_assignees.0"),
    ("team-empty", {"title": "ok", "team_id": ""}, "team_id"),
    ("sla-text", {"title": "ok", "start_sla_minutes": "abc"}, "start_sla_minutes"),
    ("sla-negative", {"title": "ok", "start_sla_minutes": -5}, "start_sla_minutes"),
    ("sla-zero", {"title": "ok", "resolve_sla_minutes": 0}, "resolve_sla_minutes"),
    ("sla-fraction", {"title": "ok", "start_sla_minutes": 1.5}, "start_sla_minutes"),
    ("sla-huge", {"title": "ok", "start_sla_minutes": 10**30}, "start_sla_minutes"),
    (
        "sla-start-after-resolve",
        {"title": "ok", "start_sla_minutes": 120, "resolve_sla_minutes": 60},
        "body",
    ),
    ("tags-string", {"title": "ok", "tags": "a,b"}, "tags"),
    ("tags-ints", {"title": "ok", "tags": [1, 2]}, "tags.0"),
    ("tags-too-many", {"title": "ok", "tags": [f"t{i}" for i in range(51)]}, "tags"),
    ("tag-too-long", {"title": "ok", "tags": ["t" * 65]}, "tags.0"),
    ("tag-blank", {"title": "ok", "tags": ["  "]}, "tags.0"),
    ("metadata-list", {"title": "ok", "metadata": [1, 2]}, "metadata"),
    ("metadata-string", {"title": "ok", "metadata": "{}"}, "metadata"),
    ("metadata-over-16k", {"title": "ok", "metadata": {"blob": "x" * 17_000}}, "metadata"),
    (
        "metadata-over-16k-multibyte",
        {"title": "ok", "metadata": {"blob": "\u00e9" * 8_500}},
        "metadata",
    ),
    (
        "metadata-many-keys",
        {"title": "ok", "metadata": {f"key-{i}": i for i in range(2_000)}},
        "metadata",
    ),
    ("metadata-nested-40", {"title": "ok", "metadata": nested(40)}, "metadata"),
    (
        "metadata-nested-lists",
        {"title": "ok", "metadata": {"a": json.loads("[" * 40 + "]" * 40)}},
        "metadata",
    ),
    ("unknown-field", {"title": "ok", "colour": "red"}, "colour"),
    ("status-not-settable", {"title": "ok", "status": "COMPLETED"}, "status"),
    ("created-by-not-settable", {"title": "ok", "created_by": UUID_OK}, "created_by"),
]


@pytest.mark.parametrize(
    ("payload", "field"), [c[1:] for c in TASK_CASES], ids=[c[0] for c in TASK_CASES]
)
async def test_create_task_rejects(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    payload: dict[str, Any],
    field: str,
) -> None:
    response = await client.post("/tasks", json=payload, headers=admin_headers)
    assert_400(response, field)
    assert await task_count(client, admin_headers) == 0


# A PATCH may omit the title; everything else is just as invalid in an update. Where the
# update reports the problem under another name, that name is given here.
UPDATE_FIELD = {
    "title-null": "body",  # "title cannot be null" (a model-level check)
    "priority-null": "body",
    "extra-assignee": "additional_assignees",  # not a PATCH field at all
    "sla-start-after-resolve": "start_sla_minutes",  # checked by the service
}
UPDATE_CASES = [
    (name, payload, UPDATE_FIELD.get(name, field))
    for name, payload, field in TASK_CASES
    if name != "title-missing"
]


@pytest.mark.parametrize(
    ("payload", "field"), [c[1:] for c in UPDATE_CASES], ids=[c[0] for c in UPDATE_CASES]
)
async def test_update_task_rejects(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    payload: dict[str, Any],
    field: str,
) -> None:
    created = await client.post(
        "/tasks", json={"title": "original", "metadata": {"k": "v"}}, headers=admin_headers
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    response = await client.patch(f"/tasks/{task_id}", json=payload, headers=admin_headers)
    assert_400(response, field)
    after = (await client.get(f"/tasks/{task_id}", headers=admin_headers)).json()
    assert after["title"] == "original"
    assert after["metadata"] == {"k": "v"}
    assert after["version"] == created.json()["version"]


async def test_unknown_priority_names_field_and_choices(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/tasks", json={"title": "ok", "priority": "URGENT"}, headers=admin_headers
    )
    error = assert_400(response)
    assert error["message"] == "Invalid input data"
    details = [d for d in error["details"] if d["field"] == "priority"]
    assert len(details) == 1
    assert details[0]["message"] == PRIORITY_MESSAGE


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("task_type", "BUG", "Must be one of: TASK, INCIDENT"),
        ("customer_tier", "GOLD", "Must be one of: ENTERPRISE, PREMIUM, STANDARD, BASIC"),
    ],
)
async def test_unknown_enum_messages(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    field: str,
    value: str,
    message: str,
) -> None:
    response = await client.post(
        "/tasks", json={"title": "ok", field: value}, headers=admin_headers
    )
    error = assert_400(response, field)
    assert {"field": field, "message": message} in [
        {"field": d["field"], "message": d["message"]} for d in error["details"]
    ]


async def test_several_problems_are_reported_together(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/tasks",
        json={"title": "", "priority": "URGENT", "tags": "x", "colour": 1},
        headers=admin_headers,
    )
    error = assert_400(response)
    assert {"title", "priority", "tags", "colour"} <= {d["field"] for d in error["details"]}


@pytest.mark.parametrize(
    "payload",
    [
        {"title": "x" * 500},
        {"title": "  padded  "},
        {"title": "ok", "metadata": {"blob": "x" * 16_000}},
        {"title": "ok", "metadata": nested(10)},
        {"title": "ok", "metadata": {"emoji": "\U0001f525", "quote": "'; DROP TABLE tasks; --"}},
        {"title": "\u00fcnic\u00f8de \u2603 \U0001f680", "tags": ["\u00e9t\u00e9"]},
        {"title": "ok", "tags": ["t" * 64] + [f"t{i}" for i in range(49)]},
        {"title": "ok", "description": "d" * 20_000},
    ],
    ids=[
        "title-500",
        "title-padded",
        "metadata-16000",
        "nested-10",
        "odd-text",
        "unicode",
        "tags-50",
        "description-20000",
    ],
)
async def test_boundary_values_are_accepted(
    client: httpx.AsyncClient, admin_headers: dict[str, str], payload: dict[str, Any]
) -> None:
    """Controls for the rejections above: values right at the documented limits are accepted."""
    response = await client.post("/tasks", json=payload, headers=admin_headers)
    assert response.status_code == 201, response.text
    stored = (await client.get(f"/tasks/{response.json()['id']}", headers=admin_headers)).json()
    assert stored["title"] == payload["title"].strip()
    assert stored["metadata"] == payload.get("metadata", {})
    assert stored["tags"] == payload.get("tags", [])


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_non_standard_json_constants_are_rejected(
    client: httpx.AsyncClient, admin_headers: dict[str, str], constant: str
) -> None:
    body = f'{{"title": "ok", "metadata": {{"ratio": {constant}}}}}'.encode()
    response = await client.post("/tasks", content=body, headers=raw_json(admin_headers))
    assert_400(response)
    assert await task_count(client, admin_headers) == 0


# --- users, teams, login --------------------------------------------------------------------


def registration(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": "valid@example.com",
        "username": "valid-user",
        "password": USER_PASSWORD,
        "full_name": "Valid User",
        "role": "developer",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


REGISTER_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("nul-username", registration(username="ab\x00cd"), "username"),
    ("nul-email", registration(email="va\x00lid@example.com"), "email"),
    ("nul-full-name", registration(full_name="Valid\x00User"), "full_name"),
    ("nul-password", registration(password="User-Pass\x0012345"), "password"),
    ("username-short", registration(username="ab"), "username"),
    ("username-long", registration(username="u" * 101), "username"),
    ("username-space", registration(username="two words"), "username"),
    ("username-at", registration(username="at@sign"), "username"),
    ("username-int", registration(username=12345), "username"),
    ("email-invalid", registration(email="not-an-email"), "email"),
    ("email-long", registration(email="e" * 250 + "@example.com"), "email"),
    ("password-short", registration(password="short"), "password"),
    ("password-long", registration(password="p" * 257), "password"),
    ("full-name-long", registration(full_name="n" * 256), "full_name"),
    ("role-unknown", registration(role="superuser"), "role"),
    ("role-upper", registration(role="ADMIN"), "role"),
    ("team-not-uuid", registration(team_id="team-1"), "team_id"),
    ("team-missing", registration(team_id=UUID_OK), "team_id"),
    ("missing-password", registration(password=...), "password"),
    ("extra-field", registration(is_superuser=True), "is_superuser"),
]


@pytest.mark.parametrize(
    ("payload", "field"), [c[1:] for c in REGISTER_CASES], ids=[c[0] for c in REGISTER_CASES]
)
async def test_register_rejects(
    client: httpx.AsyncClient, admin_headers: dict[str, str], payload: dict[str, Any], field: str
) -> None:
    response = await client.post("/auth/register", json=payload, headers=admin_headers)
    assert_400(response, field)
    users = await client.get("/users", headers=admin_headers)
    assert users.json()["pagination"]["total_items"] == 1


async def test_unknown_role_lists_the_roles(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/auth/register", json=registration(role="superuser"), headers=admin_headers
    )
    detail = next(d for d in assert_400(response)["details"] if d["field"] == "role")
    assert detail["message"] == (
        "Must be one of: admin, manager, team_lead, developer, support, auditor, viewer"
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"username": "ad\x00min", "password": "Admin-Pass-123"},
        {"username": "admin", "password": "Admin\x00-Pass-123"},
        {"email": "admin@example.com\x00", "password": "Admin-Pass-123"},
        {"username": "admin"},
        {"password": "Admin-Pass-123"},
        {"username": "", "password": "Admin-Pass-123"},
        {"username": "admin", "password": ""},
        {"username": "u" * 256, "password": "Admin-Pass-123"},
        {"username": ["admin"], "password": "Admin-Pass-123"},
        {"username": "admin", "password": 12345678},
        {"username": "admin", "password": "Admin-Pass-123", "otp": "1"},
    ],
)
async def test_login_rejects(client: httpx.AsyncClient, payload: dict[str, Any]) -> None:
    response = await client.post("/auth/login", json=payload)
    assert_400(response)
    assert "access_token" not in response.text


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "password", "username": "ad\x00min", "password": "Admin-Pass-123"},
        {"grant_type": "client_credentials", "client_id": "ofc_\x00", "client_secret": "s"},
    ],
    ids=["username", "client_id"],
)
async def test_token_form_with_nul_is_400(client: httpx.AsyncClient, form: dict[str, str]) -> None:
    assert_400(await client.post("/auth/token", data=form))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "te\x00am"}, "name"),
        ({"name": "ok", "description": "d\x00"}, "description"),
        ({"name": "n" * 256}, "name"),
        ({"name": 5}, "name"),
        ({"name": "ok", "lead_id": "lead"}, "lead_id"),
        ({"name": "ok", "description": "d" * 20_001}, "description"),
    ],
)
async def test_team_rejects(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    assert_400(await client.post("/teams", json=body, headers=admin_headers), field)
    teams = await client.get("/teams", params={"include_inactive": "true"}, headers=admin_headers)
    assert teams.json()["pagination"]["total_items"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"full_name": "nul\x00"}, "full_name"),
        ({"email": "nul\x00@example.com"}, "email"),
        ({"full_name": "n" * 256}, "full_name"),
        ({"team_id": "zzz"}, "team_id"),
        ({"is_active": "perhaps"}, "is_active"),
    ],
)
async def test_user_patch_rejects(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    assert_400(await client.patch(f"/users/{dev.id}", json=body, headers=admin_headers), field)


@pytest.mark.parametrize("key", ["address", "timezone"])
async def test_notification_preference_with_nul_is_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str], key: str
) -> None:
    response = await client.put(
        "/users/me/notification-preferences",
        json={"preferences": [{"channel": "EMAIL", key: "x\x00y"}]},
        headers=admin_headers,
    )
    assert_400(response)


@pytest.mark.parametrize(
    "body",
    [
        {"token": "t\x00"},
        {"token": ""},
        {"token": "t" * 4097},
        {"token": "x", "token_type_hint": "id"},
    ],
)
async def test_revoke_rejects(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, Any]
) -> None:
    assert_400(await client.post("/auth/revoke", json=body, headers=admin_headers))
    assert (await client.get("/auth/me", headers=admin_headers)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"name": "n\x00", "scopes": ["tasks:read"]},
        {"name": "ok", "scopes": []},
        {"name": "ok", "scopes": ["tasks:admin"]},
        {"name": "ok", "scopes": "tasks:read"},
        {"name": "", "scopes": ["tasks:read"]},
    ],
)
async def test_api_client_rejects(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, Any]
) -> None:
    assert_400(await client.post("/api-clients", json=body, headers=admin_headers))
    assert (await client.get("/api-clients", headers=admin_headers)).json() == []


# --- query parameters -----------------------------------------------------------------------


QUERY_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("/users", {"q": "a\x00"}, "q"),
    ("/users", {"q": "\x00"}, "q"),
    ("/users", {"q": "q" * 201}, "q"),
    ("/users", {"role": "superuser"}, "role"),
    ("/users", {"team_id": "xyz"}, "team_id"),
    ("/users", {"team_id": UUID_OK + "0"}, "team_id"),
    ("/users", {"is_active": "maybe"}, "is_active"),
    ("/users", {"page_size": 1000}, "page_size"),
    ("/users", {"page_size": 0}, "page_size"),
    ("/users", {"page": 0}, "page"),
    ("/users", {"page": -1}, "page"),
    ("/users", {"page": "abc"}, "page"),
    ("/users", {"page": 10**30}, "page"),
    ("/users", {"page_size": "1.5"}, "page_size"),
    ("/teams", {"page_size": 1000}, "page_size"),
    ("/teams", {"include_inactive": "perhaps"}, "include_inactive"),
    ("/tasks", {"q": "x\x00"}, "q"),
    ("/tasks", {"tags": "a\x00"}, "tags"),
    ("/tasks", {"external_id": "\x00"}, "external_id"),
    ("/tasks", {"priority": "URGENT"}, "priority"),
    ("/tasks", {"status": "DONE"}, "status"),
    ("/tasks", {"assigned_to": "xyz"}, "assigned_to"),
    ("/tasks", {"team_id": "1234"}, "team_id"),
    ("/tasks", {"created_after": "last tuesday"}, "created_after"),
    ("/tasks", {"created_after": "2026-01-27T10:00:00"}, "created_after"),
    ("/tasks", {"sort": "title"}, "sort"),
    ("/tasks", {"order": "sideways"}, "order"),
    ("/tasks", {"page_size": 1000}, "page_size"),
    ("/tasks", {"has_breach": "sometimes"}, "has_breach"),
    ("/audit-logs", {"entity_type": "task\x00"}, "entity_type"),
    ("/audit-logs", {"action": "\x00"}, "action"),
    ("/audit-logs", {"entity_id": "zzz"}, "entity_id"),
    ("/audit-logs", {"actor_id": "123"}, "actor_id"),
    ("/audit-logs", {"start_date": "soon"}, "start_date"),
    ("/audit-logs", {"page_size": 1000}, "page_size"),
    ("/audit-logs/export", {"entity_type": "\x00"}, "entity_type"),
    ("/audit-logs/export", {"format": "xlsx"}, "format"),
]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    QUERY_CASES,
    ids=[f"{p}-{next(iter(q))}-{i}" for i, (p, q, _) in enumerate(QUERY_CASES)],
)
async def test_bad_query_parameters(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    path: str,
    params: dict[str, Any],
    field: str,
) -> None:
    error = assert_400(await client.get(path, params=params, headers=admin_headers))
    # Repeatable parameters may name the offending item ("priority.0").
    fields = [d["field"] for d in error["details"]]
    assert any(f == field or f.startswith(f"{field}.") for f in fields), error


async def test_query_priority_message(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.get("/tasks", params={"priority": "URGENT"}, headers=admin_headers)
    detail = next(d for d in assert_400(response)["details"] if d["field"].startswith("priority"))
    assert detail["message"] == PRIORITY_MESSAGE


# --- path parameters ------------------------------------------------------------------------


PATH_CASES: list[tuple[str, str, str]] = [
    ("GET", "/users/not-a-uuid", "user_id"),
    ("GET", "/users/123", "user_id"),
    ("GET", "/users/%00", "user_id"),
    ("GET", f"/users/{UUID_OK[:-1]}g", "user_id"),
    ("GET", f"/users/{UUID_OK}0", "user_id"),
    ("PATCH", "/users/xyz", "user_id"),
    ("POST", "/users/xyz/deactivate", "user_id"),
    ("GET", "/teams/xyz", "team_id"),
    ("PATCH", "/teams/xyz", "team_id"),
    ("DELETE", "/teams/xyz", "team_id"),
    ("GET", "/teams/xyz/members", "team_id"),
    ("GET", "/tasks/xyz", "task_id"),
    ("PATCH", "/tasks/xyz", "task_id"),
    ("PATCH", "/tasks/%20/start", "task_id"),
    ("DELETE", "/tasks/1", "task_id"),
    ("DELETE", "/api-clients/xyz", "api_client_id"),
]


@pytest.mark.parametrize(("method", "path", "field"), PATH_CASES)
async def test_malformed_uuid_in_path(
    client: httpx.AsyncClient, admin_headers: dict[str, str], method: str, path: str, field: str
) -> None:
    kwargs: dict[str, Any] = {"json": {}} if method in {"PATCH", "POST"} else {}
    response = await client.request(method, path, headers=admin_headers, **kwargs)
    assert_400(response, field)


# --- malformed bodies -----------------------------------------------------------------------


MALFORMED = [
    b"{",
    b'{"title": }',
    b"{'title': 'single quotes'}",
    b'{"title": "trailing comma",}',
    b'{"title": "x"} trailing',
    b'{"title": "x"}{"title": "y"}',
    b'{"title": "unterminated}',
    b"<xml>title</xml>",
    b"title=x",
    b"null",
    b"123",
    b'"title"',
    b"true",
    b"[]",
    b'[{"title": "array instead of object"}]',
    b"",
    b"   ",
]


@pytest.mark.parametrize("body", MALFORMED, ids=[repr(b)[:40] for b in MALFORMED])
@pytest.mark.parametrize(
    ("path", "authenticated"),
    [("/tasks", True), ("/auth/login", False), ("/teams", True), ("/auth/refresh", False)],
)
async def test_malformed_json_body(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    body: bytes,
    path: str,
    authenticated: bool,
) -> None:
    headers = raw_json(admin_headers if authenticated else {})
    response = await client.post(path, content=body, headers=headers)
    assert_400(response)
    if path == "/tasks":
        assert await task_count(client, admin_headers) == 0


NON_UTF8 = [
    b'{"title": "\xff\xfe"}',
    b'{"title": "caf\xe9"}',
    b'{"title": "\xc3\x28"}',
    b'{"title": "\xed\xa0\x80"}',
    b'{"title": "x", "metadata": {"\x80": 1}}',
    b"\x80\x81\x82\x83",
]


@pytest.mark.parametrize("body", NON_UTF8, ids=[repr(b)[:40] for b in NON_UTF8])
async def test_non_utf8_body(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: bytes
) -> None:
    response = await client.post("/tasks", content=body, headers=raw_json(admin_headers))
    assert_400(response)
    assert await task_count(client, admin_headers) == 0


@pytest.mark.parametrize("depth", [1_000, 100_000])
async def test_pathologically_deep_json(
    client: httpx.AsyncClient, admin_headers: dict[str, str], depth: int
) -> None:
    body = b'{"title": "x", "metadata": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"
    response = await client.post("/tasks", content=body, headers=raw_json(admin_headers))
    assert_400(response)
    arrays = b"[" * depth + b"]" * depth
    assert_400(await client.post("/tasks", content=arrays, headers=raw_json(admin_headers)))
    assert await task_count(client, admin_headers) == 0


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
async def test_wrong_content_type_is_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str], content_type: str
) -> None:
    response = await client.post(
        "/tasks", content=b"title=x", headers={**admin_headers, "Content-Type": content_type}
    )
    assert_400(response)
    assert await task_count(client, admin_headers) == 0


# --- size limits ----------------------------------------------------------------------------


def oversized_task(extra: int = 64) -> bytes:
    return b'{"title": "big", "description": "' + b"d" * (MIB + extra) + b'"}'


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/tasks", "/auth/login"])
async def test_body_over_1_mib_is_413(
    client: httpx.AsyncClient, admin_headers: dict[str, str], transfer: str, path: str
) -> None:
    data = oversized_task()
    content: bytes | AsyncIterator[bytes] = data if transfer == "content-length" else _chunks(data)
    response = await client.post(path, content=content, headers=raw_json(admin_headers))
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
async def test_body_over_1_mib_is_never_processed(
    client: httpx.AsyncClient, admin_headers: dict[str, str], transfer: str
) -> None:
    """Whatever the status, an oversized body is refused with an envelope and writes nothing."""
    data = oversized_task()
    content: bytes | AsyncIterator[bytes] = data if transfer == "content-length" else _chunks(data)
    response = await client.post("/tasks", content=content, headers=raw_json(admin_headers))
    assert response.status_code in {400, 413}, response.text
    assert response.json()["error"]["code"] in {"VALIDATION_ERROR", "PAYLOAD_TOO_LARGE"}
    assert await task_count(client, admin_headers) == 0


async def test_body_just_under_1_mib_is_parsed(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """Control: the size limit is 1 MiB, not less (whitespace keeps the JSON valid)."""
    body = b'{"title": "padded"' + b" " * (MIB - 100) + b"}"
    assert len(body) < MIB
    response = await client.post("/tasks", content=body, headers=raw_json(admin_headers))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/escalation-policies", {"steps": [{"targets": ["assignee"]}]}),
        ("/webhooks", {"url": "https://example.com/hook"}),
        (
            "/maintenance-windows",
            {"starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-01T01:00:00Z"},
        ),
    ],
)
async def test_names_longer_than_their_column_are_a_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str], path: str, body: dict[str, Any]
) -> None:
    """These names are kept in 100-character columns; PostgreSQL refused 255 with a 500."""
    response = await client.post(path, json={**body, "name": "n" * 101}, headers=admin_headers)
    assert_400(response, "name")
    fits = await client.post(path, json={**body, "name": "n" * 100}, headers=admin_headers)
    assert fits.status_code == 201, fits.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/tasks", {"title": "t", "start_sla_minutes": "5"}),
        ("/tasks", {"title": "t", "resolve_sla_minutes": True}),
        ("/sla-policies", {"name": "p", "start_minutes": "5", "resolve_minutes": 10}),
        ("/webhooks", {"name": "w", "url": "https://example.com/h", "is_active": 0}),
    ],
)
async def test_numbers_and_booleans_are_json_types(
    client: httpx.AsyncClient, admin_headers: dict[str, str], path: str, body: dict[str, Any]
) -> None:
    """The document says integer and boolean: a string or a 0/1 is refused, not coerced."""
    response = await client.post(path, json=body, headers=admin_headers)
    assert_400(response)


async def test_an_integral_float_is_an_integer(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/tasks", json={"title": "t", "start_sla_minutes": 5.0}, headers=admin_headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["start_sla_minutes"] == 5
