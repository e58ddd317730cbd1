"""The audit log: every change leaves a chained audit row with
actor, client address, user agent and request id; filters; CSV/JSON export; chain
verification that notices tampering done directly in the database."""

from __future__ import annotations

import csv
import io
import itertools
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from opsflow.audit.chain import chain_hash
from opsflow.clock import SettableClock
from opsflow.context import AppContext
from tests.conftest import assert_error
from tests.factories import USER_PASSWORD, bearer, make_team, make_user

AUDIT_KEYS = {
    "id",
    "seq",
    "entity_type",
    "entity_id",
    "action",
    "actor_type",
    "actor",
    "changes",
    "previous_state",
    "new_state",
    "metadata",
    "timestamp",
    "ip_address",
    "user_agent",
    "request_id",
    "hash",
    "prev_hash",
}
CSV_COLUMNS = [
    "seq",
    "id",
    "timestamp",
    "entity_type",
    "entity_id",
    "action",
    "actor_type",
    "actor_id",
    "actor_name",
    "changes",
    "ip_address",
    "user_agent",
    "request_id",
    "prev_hash",
    "hash",
]
USER_AGENT = "opsflow-tests/1.0 (+audit)"


async def audit_rows(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    response = await client.get("/audit-logs", params={"page_size": 100, **params}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pagination"]["total_items"] == len(body["items"])  # all on one page
    return list(body["items"])


# --- every change is audited ----------------------------------------------------------------


@dataclass
class Expect:
    entity_type: str
    entity_id: str
    action: str
    actor: str  # username, or "client:<name>" for API clients
    actor_type: str = "user"
    changes: dict[str, Any] | None = None
    new_state: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)  # must not appear in the row


Operation = Callable[[httpx.AsyncClient, dict[str, str], dict[str, str]], Awaitable[Expect]]


async def op_register(c: httpx.AsyncClient, admin: dict[str, str], meta: dict[str, str]) -> Expect:
    response = await c.post(
        "/auth/register",
        json={
            "email": "new.person@example.com",
            "username": "new.person",
            "password": "Secret-Word-4242",
            "role": "support",
        },
        headers={**admin, **meta},
    )
    assert response.status_code == 201, response.text
    return Expect(
        "user",
        response.json()["id"],
        "USER_CREATED",
        "admin",
        new_state={"username": "new.person", "role": "support", "is_active": True},
        secrets=["Secret-Word-4242", "argon2"],
    )


async def op_login(c: httpx.AsyncClient, admin: dict[str, str], meta: dict[str, str]) -> Expect:
    dev = await make_user(c, admin, "developer")
    response = await c.post(
        "/auth/login", json={"username": dev.username, "password": USER_PASSWORD}, headers=meta
    )
    assert response.status_code == 200, response.text
    return Expect("user", dev.id, "USER_LOGGED_IN", dev.username, secrets=[USER_PASSWORD])


async def op_admin_changes_role(
    c: httpx.AsyncClient, admin: dict[str, str], meta: dict[str, str]
) -> Expect:
    dev = await make_user(c, admin, "developer")
    response = await c.patch(
        f"/users/{dev.id}", json={"role": "manager"}, headers={**admin, **meta}
    )
    assert response.status_code == 200, response.text
    return Expect(
        "user",
        dev.id,
        "USER_UPDATED",
        "admin",
        changes={"role": {"from": "developer", "to": "manager"}},
    )


async def op_self_edit(c: httpx.AsyncClient, admin: dict[str, str], meta: dict[str, str]) -> Expect:
    dev = await make_user(c, admin, "developer", username="self-editor")
    response = await c.patch(
        f"/users/{dev.id}", json={"full_name": "Self Edited"}, headers={**dev.headers, **meta}
    )
    assert response.status_code == 200, response.text
    return Expect(
        "user",
        dev.id,
        "USER_UPDATED",
        "self-editor",
        changes={"full_name": {"from": "Self Editor", "to": "Self Edited"}},
    )


async def op_password_change(
    c: httpx.AsyncClient, admin: dict[str, str], meta: dict[str, str]
) -> Expect:
    dev = await make_user(c, admin, "developer")
    response = await c.patch(
        f"/users/{dev.id}",
        json={"password": "Fresh-Secret-777", "current_password": USER_PASSWORD},
        headers={**dev.headers, **meta},
    )
    assert response.status_code == 200, response.text
    return Expect(
        "user",
        dev.id,
        "USER_UPDATED",
        dev.username,
        changes={"password": {"from": "***", "to": "***"}},
        secrets=["Fresh-Secret-777", USER_PASSWORD, "argon2"],
    )


async def op_deactivate(
    c: httpx.AsyncClient, admin: dict[str, str], meta: dict[str, str]
) -> Expect:
    dev = await make_user(c, admin, "developer")
    response = await c.post(f"/users/{dev.id}/deactivate", headers={**admin, **meta})
    assert response.status_code == 200, response.text
    return Expect(
        "user",
        dev.id,
        "USER_DEACTIVATED",
        "admin",
        changes={"is_active": {"from": True, "to": False}},
    )


async def op_logout(c: httpx.AsyncClient, admin: dict[str, str], meta: dict[str, str]) -> Expect:
    dev = await make_user(c, admin, "developer")
    response = await c.post("/auth/logout", headers={**dev.headers, **meta})
    assert response.status_code == 204, response.text
    return Expect("user", dev.id, "SESSION_REVOKED", dev.username, metadata={"reason": "logout"})


async def op_revoke(c: httpx.AsyncClient, admin: dict[str, str], meta: dict[str, str]) -> Expect:
    dev = await make_user(c, admin, "developer")
    other = await c.post("/auth/login", json={"username": dev.username, "password": USER_PASSWORD})
    refresh = other.json()["refresh_token"]
    response = await c.post("/auth/revoke", json={"token": refresh}, headers={**admin, **meta})
    assert response.status_code == 204, response.text
    return Expect(
        "user",
        dev.id,
        "SESSION_REVOKED",
        "admin",
        metadata={"reason": "revoked"},
        secrets=[refresh],
    )


async def op_team_create(
    c: httpx.AsyncClient, admin: dict[str, str], meta: dict[str, str]
) -> Expect:
    manager = await make_user(c, admin, "manager", username="the-manager")
    response = await c.post(
        "/teams", json={"name": "audited", "description": "d"}, headers={**manager.headers, **meta}
    )
    assert response.status_code == 201, response.text
    return Expect(
        "team",
        response.json()["id"],
        "TEAM_CREATED",
        "the-manager",
        new_state={"name": "audited", "description": "d", "is_active": True},
    )


async def op_team_update(
    c: httpx.AsyncClient, admin: dict[str, str], meta: dict[str, str]
) -> Expect:
    team = await make_team(c, admin, "before")
    response = await c.patch(f"/teams/{team}", json={"name": "after"}, headers={**admin, **meta})
    assert response.status_code == 200, response.text
    return Expect(
        "team", team, "TEAM_UPDATED", "admin", changes={"name": {"from": "before", "to": "after"}}
    )


async def op_team_delete(
    c: httpx.AsyncClient, admin: dict[str, str], meta: dict[str, str]
) -> Expect:
    team = await make_team(c, admin, "doomed")
    response = await c.delete(f"/teams/{team}", headers={**admin, **meta})
    assert response.status_code == 204, response.text
    return Expect(
        "team",
        team,
        "TEAM_DEACTIVATED",
        "admin",
        changes={"is_active": {"from": True, "to": False}},
    )


async def op_client_create(
    c: httpx.AsyncClient, admin: dict[str, str], meta: dict[str, str]
) -> Expect:
    response = await c.post(
        "/api-clients", json={"name": "ci-bot", "scopes": ["tasks:read"]}, headers={**admin, **meta}
    )
    assert response.status_code == 201, response.text
    return Expect(
        "api_client",
        response.json()["id"],
        "API_CLIENT_CREATED",
        "admin",
        new_state={"name": "ci-bot", "scopes": ["tasks:read"]},
        secrets=[response.json()["client_secret"]],
    )


async def op_client_revoke(
    c: httpx.AsyncClient, admin: dict[str, str], meta: dict[str, str]
) -> Expect:
    created = await c.post(
        "/api-clients", json={"name": "old-bot", "scopes": ["tasks:read"]}, headers=admin
    )
    client_id = created.json()["id"]
    response = await c.delete(f"/api-clients/{client_id}", headers={**admin, **meta})
    assert response.status_code == 204, response.text
    return Expect(
        "api_client",
        client_id,
        "API_CLIENT_REVOKED",
        "admin",
        changes={"revoked_at": {"from": None, "to": "2026-01-27T10:30:00Z"}},
    )


async def op_preferences(
    c: httpx.AsyncClient, admin: dict[str, str], meta: dict[str, str]
) -> Expect:
    dev = await make_user(c, admin, "developer")
    response = await c.put(
        "/users/me/notification-preferences",
        json={"preferences": [{"channel": "SLACK", "enabled": False}]},
        headers={**dev.headers, **meta},
    )
    assert response.status_code == 200, response.text
    return Expect("user", dev.id, "NOTIFICATION_PREFERENCES_UPDATED", dev.username)


async def op_client_creates_task(
    c: httpx.AsyncClient, admin: dict[str, str], meta: dict[str, str]
) -> Expect:
    created = await c.post(
        "/api-clients", json={"name": "ingest", "scopes": ["tasks:write"]}, headers=admin
    )
    creds = created.json()
    token = await c.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
        },
    )
    response = await c.post(
        "/tasks",
        json={"title": "from the api"},
        headers={**bearer(token.json()["access_token"]), **meta},
    )
    assert response.status_code == 201, response.text
    return Expect(
        "task",
        response.json()["id"],
        "TASK_CREATED",
        "client:ingest",
        actor_type="api",
        new_state={"title": "from the api"},
    )


OPERATIONS: dict[str, Operation] = {
    "register": op_register,
    "login": op_login,
    "admin-changes-role": op_admin_changes_role,
    "self-edit": op_self_edit,
    "password-change": op_password_change,
    "deactivate": op_deactivate,
    "logout": op_logout,
    "revoke": op_revoke,
    "team-create": op_team_create,
    "team-update": op_team_update,
    "team-delete": op_team_delete,
    "api-client-create": op_client_create,
    "api-client-revoke": op_client_revoke,
    "notification-preferences": op_preferences,
    "api-client-creates-task": op_client_creates_task,
}


@pytest.mark.parametrize("name", list(OPERATIONS))
async def test_change_is_audited_with_request_context(
    client: httpx.AsyncClient, admin_headers: dict[str, str], name: str
) -> None:
    request_id = f"audit-{name}-{uuid.uuid4().hex[:8]}"
    meta = {"X-Request-ID": request_id, "User-Agent": USER_AGENT}
    echoed: list[str] = []

    async def capture(response: httpx.Response) -> None:
        if response.request.headers.get("x-request-id") == request_id:
            echoed.append(response.headers["x-request-id"])

    client.event_hooks["response"].append(capture)
    try:
        expect = await OPERATIONS[name](client, admin_headers, meta)
    finally:
        client.event_hooks["response"].remove(capture)
    # Exactly one request carried the id, and its response echoed it.
    assert echoed == [request_id]

    rows = await audit_rows(client, admin_headers)
    mine = [r for r in rows if r["request_id"] == request_id]
    assert len(mine) == 1, [(r["action"], r["request_id"]) for r in rows[:10]]
    row = mine[0]
    assert set(row) == AUDIT_KEYS
    assert row["entity_type"] == expect.entity_type
    assert row["entity_id"] == expect.entity_id
    assert row["action"] == expect.action
    assert row["actor_type"] == expect.actor_type
    assert row["actor"]["username"] == expect.actor
    uuid.UUID(row["actor"]["id"])
    assert row["ip_address"] == "127.0.0.1"
    assert row["user_agent"] == USER_AGENT
    assert row["timestamp"] == "2026-01-27T10:30:00Z"
    if expect.changes is not None:
        assert row["changes"] == expect.changes
    for key, value in expect.new_state.items():
        assert row["new_state"][key] == value, (key, row["new_state"])
    for key, value in expect.metadata.items():
        assert row["metadata"][key] == value, (key, row["metadata"])
    serialized = json.dumps(row)
    for secret in expect.secrets:
        assert secret not in serialized

    # The same row is found by entity, and the chain stays valid.
    by_entity = await audit_rows(
        client, admin_headers, entity_id=expect.entity_id, action=expect.action
    )
    assert row["id"] in [r["id"] for r in by_entity]
    verify = await client.get("/audit-logs/verify", headers=admin_headers)
    assert verify.json()["valid"] is True, verify.text


async def test_rejected_requests_write_no_audit_rows(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    before = await audit_rows(client, admin_headers)
    attempts = [
        client.post(
            "/auth/register",
            json={"email": "z@example.com", "username": "zed", "password": USER_PASSWORD},
            headers=dev.headers,
        ),
        client.post("/teams", json={"name": "nope"}, headers=dev.headers),
        client.patch(f"/users/{dev.id}", json={"role": "admin"}, headers=dev.headers),
        client.post("/teams", json={"name": ""}, headers=admin_headers),
        client.post("/auth/login", json={"username": dev.username, "password": "Wrong-Pass-1"}),
        client.patch(f"/users/{uuid.uuid4()}", json={"full_name": "x"}, headers=admin_headers),
    ]
    for attempt in attempts:
        response = await attempt
        assert response.status_code >= 400, response.text
    after = await audit_rows(client, admin_headers)
    assert [r["id"] for r in after] == [r["id"] for r in before]


async def test_user_agent_is_truncated_not_rejected(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    agent = "A" * 300 + "B" * 1700
    response = await client.post(
        "/teams", json={"name": "ua"}, headers={**admin_headers, "User-Agent": agent}
    )
    assert response.status_code == 201, response.text
    (row,) = await audit_rows(client, admin_headers, entity_id=response.json()["id"])
    assert row["user_agent"] == agent[:512]


# --- listing and filters --------------------------------------------------------------------


@pytest.fixture
async def history(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> dict[str, Any]:
    """A small, timed history.

    10:30  admin logs in (fixture), creates team "night-shift"
    11:30  admin registers dana (USER_CREATED)
    12:30  dana logs in and renames herself (USER_LOGGED_IN, USER_UPDATED)
    13:30  admin renames the team (TEAM_UPDATED)
    """
    team = await make_team(client, admin_headers, "night-shift")
    clock.advance(timedelta(hours=1))
    dana = await client.post(
        "/auth/register",
        json={"email": "dana@example.com", "username": "dana", "password": USER_PASSWORD},
        headers=admin_headers,
    )
    dana_id = dana.json()["id"]
    clock.advance(timedelta(hours=1))
    tokens = await client.post("/auth/login", json={"username": "dana", "password": USER_PASSWORD})
    dana_headers = bearer(tokens.json()["access_token"])
    renamed = await client.patch(
        f"/users/{dana_id}", json={"full_name": "Dana S."}, headers=dana_headers
    )
    assert renamed.status_code == 200
    clock.advance(timedelta(hours=1))
    moved = await client.patch(f"/teams/{team}", json={"name": "day-shift"}, headers=admin_headers)
    assert moved.status_code == 200
    admin_id = (await client.get("/auth/me", headers=admin_headers)).json()["id"]
    return {"team": team, "dana": dana_id, "admin": admin_id}


async def actions(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    return [r["action"] for r in await audit_rows(client, headers, **params)]


async def test_list_is_newest_first_with_pagination(
    client: httpx.AsyncClient, admin_headers: dict[str, str], history: dict[str, Any]
) -> None:
    response = await client.get("/audit-logs", params={"page_size": 3}, headers=admin_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    total = body["pagination"]["total_items"]
    # bootstrap admin, admin login, team created, dana created, login, update, team update
    assert total == 7
    assert body["pagination"] == {
        "page": 1,
        "page_size": 3,
        "total_items": 7,
        "total_pages": 3,
        "has_next": True,
        "has_previous": False,
    }
    seqs = [r["seq"] for r in body["items"]]
    assert seqs == [7, 6, 5]
    everything = await audit_rows(client, admin_headers)
    assert [r["seq"] for r in everything] == list(range(7, 0, -1))
    # Each row links to the one before it.
    ordered = list(reversed(everything))
    assert ordered[0]["prev_hash"] == "0" * 64
    for previous, row in itertools.pairwise(ordered):
        assert row["prev_hash"] == previous["hash"]
    assert ordered[0]["action"] == "USER_CREATED"
    assert ordered[0]["actor_type"] == "system"


async def test_filters(
    client: httpx.AsyncClient, admin_headers: dict[str, str], history: dict[str, Any]
) -> None:
    team, dana, admin = history["team"], history["dana"], history["admin"]
    assert await actions(client, admin_headers, entity_type="team") == [
        "TEAM_UPDATED",
        "TEAM_CREATED",
    ]
    assert await actions(client, admin_headers, entity_id=team) == ["TEAM_UPDATED", "TEAM_CREATED"]
    assert await actions(client, admin_headers, entity_id=dana) == [
        "USER_UPDATED",
        "USER_LOGGED_IN",
        "USER_CREATED",
    ]
    assert await actions(client, admin_headers, action="USER_UPDATED") == ["USER_UPDATED"]
    assert await actions(client, admin_headers, action="user_logged_in") == [
        "USER_LOGGED_IN",
        "USER_LOGGED_IN",
    ]
    assert await actions(client, admin_headers, actor_id=dana) == [
        "USER_UPDATED",
        "USER_LOGGED_IN",
    ]
    assert await actions(client, admin_headers, actor_id=admin) == [
        "TEAM_UPDATED",
        "USER_CREATED",
        "TEAM_CREATED",
        "USER_LOGGED_IN",
    ]
    assert await actions(client, admin_headers, entity_type="user", actor_id=admin) == [
        "USER_CREATED",
        "USER_LOGGED_IN",
    ]
    assert await actions(client, admin_headers, entity_type="task") == []
    assert await actions(client, admin_headers, entity_id=str(uuid.uuid4())) == []
    assert await actions(client, admin_headers, action="NOPE") == []


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2026-01-27T11:00:00Z", "2026-01-27T12:00:00Z", ["USER_CREATED"]),
        ("2026-01-27T11:30:00Z", "2026-01-27T11:30:00Z", ["USER_CREATED"]),  # inclusive
        ("2026-01-27T12:30:00Z", None, ["TEAM_UPDATED", "USER_UPDATED", "USER_LOGGED_IN"]),
        (None, "2026-01-27T10:59:59Z", ["TEAM_CREATED", "USER_LOGGED_IN", "USER_CREATED"]),
        ("2026-01-27T13:30:00+02:00", "2026-01-27T13:30:00+02:00", ["USER_CREATED"]),
        ("2026-01-27T14:00:00Z", None, []),
        ("2026-01-27T12:00:00Z", "2026-01-27T11:00:00Z", []),
    ],
)
async def test_date_filters(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    history: dict[str, Any],
    start: str | None,
    end: str | None,
    expected: list[str],
) -> None:
    params = {k: v for k, v in (("start_date", start), ("end_date", end)) if v}
    assert await actions(client, admin_headers, **params) == expected


BOTH = ("/audit-logs", "/audit-logs/export")


@pytest.mark.parametrize(
    ("params", "paths"),
    [
        ({"start_date": "2026-01-27T11:00:00"}, BOTH),
        ({"end_date": "2026-01-27"}, BOTH),
        ({"start_date": "yesterday"}, BOTH),
        ({"entity_id": "not-a-uuid"}, BOTH),
        ({"actor_id": "123"}, BOTH),
        ({"entity_type": "x" * 65}, BOTH),
        ({"action": "x" * 65}, BOTH),
        ({"page_size": 101}, ("/audit-logs",)),
        ({"page": 0}, ("/audit-logs",)),
    ],
)
async def test_invalid_filters_are_400(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    params: dict[str, Any],
    paths: tuple[str, ...],
) -> None:
    for path in paths:
        response = await client.get(path, params=params, headers=admin_headers)
        error = assert_error(response, 400, "VALIDATION_ERROR")
        assert error["details"][0]["field"] == next(iter(params))


# --- export ---------------------------------------------------------------------------------


async def test_export_csv(
    client: httpx.AsyncClient, admin_headers: dict[str, str], history: dict[str, Any]
) -> None:
    listed = list(reversed(await audit_rows(client, admin_headers)))
    response = await client.get(
        "/audit-logs/export", params={"format": "csv"}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert 'filename="audit-logs-' in disposition
    assert disposition.endswith('.csv"')

    rows = list(csv.DictReader(io.StringIO(response.text)))
    with io.StringIO(response.text) as handle:
        assert next(csv.reader(handle)) == CSV_COLUMNS
    assert len(rows) == len(listed) == 7
    assert [r["id"] for r in rows] == [r["id"] for r in listed]  # chain order
    assert [int(r["seq"]) for r in rows] == [r["seq"] for r in listed]
    for exported, row in zip(rows, listed, strict=True):
        assert exported["action"] == row["action"]
        assert exported["hash"] == row["hash"]
        assert exported["prev_hash"] == row["prev_hash"]
        assert exported["entity_id"] == row["entity_id"]
        assert exported["actor_name"] == (row["actor"]["username"] or "")
        assert json.loads(exported["changes"]) == row["changes"]
    update = next(r for r in rows if r["action"] == "TEAM_UPDATED")
    assert json.loads(update["changes"]) == {"name": {"from": "night-shift", "to": "day-shift"}}
    assert update["ip_address"] == "127.0.0.1"


async def test_export_csv_is_the_default_and_honours_filters(
    client: httpx.AsyncClient, admin_headers: dict[str, str], history: dict[str, Any]
) -> None:
    response = await client.get(
        "/audit-logs/export", params={"entity_id": history["dana"]}, headers=admin_headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["action"] for r in rows] == ["USER_CREATED", "USER_LOGGED_IN", "USER_UPDATED"]
    empty = await client.get(
        "/audit-logs/export", params={"entity_type": "nothing"}, headers=admin_headers
    )
    assert list(csv.reader(io.StringIO(empty.text))) == [CSV_COLUMNS]


async def test_export_json(
    client: httpx.AsyncClient, admin_headers: dict[str, str], history: dict[str, Any]
) -> None:
    listed = list(reversed(await audit_rows(client, admin_headers, entity_type="user")))
    response = await client.get(
        "/audit-logs/export",
        params={"format": "json", "entity_type": "user"},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert disposition.endswith('.json"')
    exported = response.json()
    assert isinstance(exported, list)
    assert len(exported) == len(listed) == 5
    assert exported == listed

    empty = await client.get(
        "/audit-logs/export", params={"format": "json", "action": "NOTHING"}, headers=admin_headers
    )
    assert empty.json() == []


async def test_export_neutralises_spreadsheet_formulas(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    agent = '=HYPERLINK("http://evil.example","click")'
    created = await client.post(
        "/teams", json={"name": "csv"}, headers={**admin_headers, "User-Agent": agent}
    )
    assert created.status_code == 201
    team = created.json()["id"]
    as_csv = await client.get(
        "/audit-logs/export", params={"entity_id": team}, headers=admin_headers
    )
    (row,) = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert not row["user_agent"].startswith("=")
    assert row["user_agent"].endswith(agent)
    # JSON keeps the value as it was recorded.
    as_json = await client.get(
        "/audit-logs/export", params={"entity_id": team, "format": "json"}, headers=admin_headers
    )
    assert as_json.json()[0]["user_agent"] == agent


@pytest.mark.parametrize("fmt", ["xml", "CSV", "", "pdf"])
async def test_export_unknown_format_is_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str], fmt: str
) -> None:
    response = await client.get("/audit-logs/export", params={"format": fmt}, headers=admin_headers)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "format"


# --- chain verification ---------------------------------------------------------------------


async def verify(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/audit-logs/verify", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_verify_valid_chain(
    client: httpx.AsyncClient, admin_headers: dict[str, str], history: dict[str, Any]
) -> None:
    newest = (await audit_rows(client, admin_headers))[0]
    result = await verify(client, admin_headers)
    assert result["valid"] is True
    assert result["checked"] == 7
    assert result["head_seq"] == newest["seq"] == 7
    assert result["head_hash"] == newest["hash"]
    assert result["first_invalid_seq"] is None
    assert result["reason"] is None
    assert result["verified_at"] == "2026-01-27T13:30:00Z"


async def _execute(app_context: AppContext, statement: str, **params: Any) -> None:
    async with app_context.sessions() as session:
        result = await session.execute(text(statement), params)
        assert getattr(result, "rowcount", 1) == 1
        await session.commit()


def _json_param(app_context: AppContext) -> str:
    return "CAST(:value AS JSONB)" if app_context.engine.dialect.name == "postgresql" else ":value"


async def test_verify_detects_modified_changes(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    history: dict[str, Any],
    app_context: AppContext,
) -> None:
    (row,) = await audit_rows(client, admin_headers, action="USER_UPDATED")
    forged = json.dumps({"full_name": {"from": "dana", "to": "Someone Else"}})
    await _execute(
        app_context,
        f"UPDATE audit_logs SET changes = {_json_param(app_context)} WHERE seq = :seq",
        value=forged,
        seq=row["seq"],
    )
    result = await verify(client, admin_headers)
    assert result["valid"] is False
    assert result["first_invalid_seq"] == row["seq"]
    assert result["checked"] == row["seq"] - 1
    assert "modified" in result["reason"]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("actor_name", "mallory"),
        ("ip_address", "10.6.6.6"),
        ("action", "USER_LOGGED_OUT"),
        ("request_id", "req_forged"),
        ("user_agent", None),
    ],
)
async def test_verify_detects_modified_columns(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    history: dict[str, Any],
    app_context: AppContext,
    column: str,
    value: str | None,
) -> None:
    await _execute(
        app_context, f"UPDATE audit_logs SET {column} = :value WHERE seq = 4", value=value
    )
    result = await verify(client, admin_headers)
    assert result["valid"] is False
    assert result["first_invalid_seq"] == 4


async def test_verify_detects_deleted_middle_row(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    history: dict[str, Any],
    app_context: AppContext,
) -> None:
    await _execute(app_context, "DELETE FROM audit_logs WHERE seq = :seq", seq=3)
    result = await verify(client, admin_headers)
    assert result["valid"] is False
    assert result["first_invalid_seq"] == 4
    assert result["checked"] == 2
    assert "gap" in result["reason"]


async def test_verify_detects_rehashed_row_through_the_link(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    history: dict[str, Any],
    app_context: AppContext,
) -> None:
    """A forger who also recomputes the modified row's own hash breaks the next link."""
    (row,) = await audit_rows(client, admin_headers, action="USER_UPDATED")
    forged_changes = {"full_name": {"from": "x", "to": "y"}}
    content = {
        "seq": row["seq"],
        "id": row["id"],
        "entity_type": row["entity_type"],
        "entity_id": row["entity_id"],
        "action": row["action"],
        "actor_type": row["actor_type"],
        "actor_id": row["actor"]["id"],
        "actor_name": row["actor"]["username"],
        "previous_state": row["previous_state"],
        "new_state": row["new_state"],
        "changes": row["changes"],
        "ip_address": row["ip_address"],
        "user_agent": row["user_agent"],
        "request_id": row["request_id"],
        "timestamp": row["timestamp"],
        "metadata": row["metadata"],
    }
    # Sanity: our reconstruction matches the stored hash, so the forgery below is faithful.
    assert chain_hash(row["prev_hash"], content) == row["hash"]
    new_hash = chain_hash(row["prev_hash"], {**content, "changes": forged_changes})
    await _execute(
        app_context,
        f"UPDATE audit_logs SET changes = {_json_param(app_context)}, hash = :hash "
        "WHERE seq = :seq",
        value=json.dumps(forged_changes),
        hash=new_hash,
        seq=row["seq"],
    )
    result = await verify(client, admin_headers)
    assert result["valid"] is False
    assert result["first_invalid_seq"] == row["seq"] + 1
    assert "prev_hash" in result["reason"]


async def test_chain_continues_valid_after_more_writes(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    for index in range(5):
        clock.advance(timedelta(minutes=7))
        await make_team(client, admin_headers, f"t{index}")
    result = await verify(client, admin_headers)
    assert result == {
        "valid": True,
        "checked": 7,
        "head_seq": 7,
        "head_hash": result["head_hash"],
        "first_invalid_seq": None,
        "reason": None,
        "verified_at": "2026-01-27T11:05:00Z",
    }


# --- who may read the audit trail -----------------------------------------------------------


AUDIT_ENDPOINTS = ["/audit-logs", "/audit-logs/export", "/audit-logs/verify"]


@pytest.mark.parametrize("role", ["manager", "team_lead", "developer", "support", "viewer"])
async def test_audit_endpoints_forbidden_for_other_roles(
    client: httpx.AsyncClient, admin_headers: dict[str, str], role: str
) -> None:
    actor = await make_user(client, admin_headers, role)
    for path in AUDIT_ENDPOINTS:
        response = await client.get(path, headers=actor.headers)
        error = assert_error(response, 403, "FORBIDDEN")
        assert error["required_role"] == "admin"
        assert set(error["allowed_roles"]) == {"admin", "auditor"}
        assert "hash" not in response.text


async def test_auditor_reads_everything(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    auditor = await make_user(client, admin_headers, "auditor")
    listing = await client.get("/audit-logs", headers=auditor.headers)
    assert listing.status_code == 200, listing.text
    assert listing.json()["pagination"]["total_items"] >= 3
    export = await client.get("/audit-logs/export", headers=auditor.headers)
    assert export.status_code == 200
    exported = list(csv.DictReader(io.StringIO(export.text)))
    assert len(exported) == listing.json()["pagination"]["total_items"]
    result = await client.get("/audit-logs/verify", headers=auditor.headers)
    assert result.status_code == 200
    assert result.json()["valid"] is True
    # Reading is not itself a change: no rows were added by the auditor's reads.
    again = await client.get("/audit-logs", headers=auditor.headers)
    assert again.json()["pagination"]["total_items"] == listing.json()["pagination"]["total_items"]


async def test_audit_endpoints_closed_to_api_clients_and_anonymous(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = await client.post(
        "/api-clients",
        json={
            "name": "all-scopes",
            "scopes": ["tasks:read", "tasks:write", "tickets:ingest", "reports:read"],
        },
        headers=admin_headers,
    )
    creds = created.json()
    token = await client.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
        },
    )
    for path in AUDIT_ENDPOINTS:
        assert_error(
            await client.get(path, headers=bearer(token.json()["access_token"])), 403, "FORBIDDEN"
        )
        assert_error(await client.get(path), 401, "UNAUTHORIZED")
