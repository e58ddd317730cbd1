"""Comments: writing, reading, editing and deleting them; internal ones kept from viewers,
from API clients without a tasks scope and from outbound webhooks; mentions reaching people
through the notification rules (a real SMTP server and a Slack sink on loopback); hostile
input refused with nothing written. Time moves only with the settable clock."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from opsflow.clock import SettableClock
from opsflow.config import Settings
from opsflow.context import AppContext
from opsflow.models.audit import AuditLog
from opsflow.models.collaboration import Comment
from opsflow.models.outbox import OutboxEvent
from tests.conftest import T0, assert_error, delivery_settings
from tests.factories import (
    advance,
    bearer,
    client_token,
    create_api_client,
    make_task,
    make_team,
    make_user,
)
from tests.sinks import HttpSink, SmtpSink

Headers = dict[str, str]


@pytest.fixture
def settings(database_url: str, smtp: tuple[SmtpSink, int], slack: HttpSink) -> Settings:
    return delivery_settings(database_url, smtp, slack, public_url="https://ops.example.com")


async def _post(
    client: httpx.AsyncClient, task_id: str, headers: Headers, body: str, **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/tasks/{task_id}/comments", json={"body": body, **extra}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _bodies(client: httpx.AsyncClient, task_id: str, headers: Headers) -> list[str]:
    response = await client.get(f"/tasks/{task_id}/comments", headers=headers)
    assert response.status_code == 200, response.text
    return [c["body"] for c in response.json()["items"]]


async def _events(ctx: AppContext, prefix: str) -> list[OutboxEvent]:
    async with ctx.read_sessions() as session:
        query = (
            select(OutboxEvent)
            .where(OutboxEvent.event_type.startswith(prefix))
            .order_by(OutboxEvent.created_at)
        )
        return list(await session.scalars(query))


async def _counts(ctx: AppContext) -> tuple[int, int, int]:
    async with ctx.read_sessions() as session:
        return (
            int(await session.scalar(select(func.count()).select_from(Comment)) or 0),
            int(
                await session.scalar(
                    select(func.count())
                    .select_from(AuditLog)
                    .where(AuditLog.entity_type == "comment")
                )
                or 0
            ),
            int(
                await session.scalar(
                    select(func.count())
                    .select_from(OutboxEvent)
                    .where(OutboxEvent.event_type.startswith("comment."))
                )
                or 0
            ),
        )


async def test_a_comment_is_written_edited_and_deleted_with_audit_and_events(
    client: httpx.AsyncClient,
    admin_headers: Headers,
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    team = await make_team(client, admin_headers)
    dev = await make_user(client, admin_headers, "developer", team_id=team)
    task = await make_task(client, admin_headers, assigned_to=dev.id, team_id=team)

    created = await _post(client, task["id"], dev.headers, "Looking at **the logs** now")
    assert created["author"]["id"] == dev.id
    assert created["author"]["type"] == "user"
    assert created["edited_at"] is None
    assert created["internal"] is False
    assert created["body"] == "Looking at **the logs** now"  # Markdown kept as written

    clock.set(T0 + timedelta(minutes=5))
    edited = await client.patch(
        f"/comments/{created['id']}", json={"body": "Looked at the logs"}, headers=dev.headers
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["edited_at"] == "2026-01-27T10:35:00Z"
    assert edited.json()["created_at"] == "2026-01-27T10:30:00Z"

    clock.set(T0 + timedelta(minutes=6))
    deleted = await client.delete(f"/comments/{created['id']}", headers=dev.headers)
    assert deleted.status_code == 204, deleted.text
    assert await _bodies(client, task["id"], admin_headers) == []
    gone = await client.patch(
        f"/comments/{created['id']}", json={"body": "again"}, headers=dev.headers
    )
    assert_error(gone, 404, "NOT_FOUND")

    # The audit trail keeps the deleted comment's history, text included.
    trail = await client.get(
        "/audit-logs",
        params={"entity_type": "comment", "entity_id": created["id"]},
        headers=admin_headers,
    )
    assert trail.status_code == 200, trail.text
    rows = sorted(trail.json()["items"], key=lambda r: r["timestamp"])
    assert [r["action"] for r in rows] == ["COMMENT_CREATED", "COMMENT_UPDATED", "COMMENT_DELETED"]
    assert rows[0]["new_state"]["body"] == "Looking at **the logs** now"
    assert rows[1]["changes"]["body"] == {
        "from": "Looking at **the logs** now",
        "to": "Looked at the logs",
    }
    assert rows[2]["previous_state"]["body"] == "Looked at the logs"

    events = await _events(app_context, "comment.")
    assert [e.event_type for e in events] == [
        "comment.created",
        "comment.updated",
        "comment.deleted",
    ]
    first = events[0]
    assert (first.aggregate_type, str(first.aggregate_id)) == ("comment", created["id"])
    payload = first.payload
    assert payload["task_id"] == task["id"]
    assert payload["comment_id"] == created["id"]
    assert payload["internal"] is False
    assert payload["author"] == {
        "type": "user",
        "id": dev.id,
        "name": dev.username,
        "user_id": dev.id,
    }
    # The task summary the real-time stream and the notification texts show.
    assert payload["task"]["id"] == task["id"]
    assert payload["task"]["title"] == task["title"]
    assert payload["task"]["assigned_to"] == dev.id
    assert payload["task"]["team_id"] == team
    assert payload["comment"]["body"] == "Looking at **the logs** now"
    assert events[2].payload["comment"] is None  # a deletion carries no text


async def test_only_the_author_or_an_admin_changes_a_comment(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    author = await make_user(client, admin_headers, "developer")
    other = await make_user(client, admin_headers, "manager")
    viewer = await make_user(client, admin_headers, "viewer")
    task = await make_task(client, admin_headers)
    comment = await _post(client, task["id"], author.headers, "mine")

    refused = await client.patch(
        f"/comments/{comment['id']}", json={"body": "theirs"}, headers=other.headers
    )
    error = assert_error(refused, 403, "FORBIDDEN")
    assert error["required_role"] == "admin"
    assert_error(
        await client.delete(f"/comments/{comment['id']}", headers=other.headers), 403, "FORBIDDEN"
    )
    assert_error(
        await client.post(
            f"/tasks/{task['id']}/comments", json={"body": "hi"}, headers=viewer.headers
        ),
        403,
        "FORBIDDEN",
    )
    moderated = await client.patch(
        f"/comments/{comment['id']}", json={"internal": True}, headers=admin_headers
    )
    assert moderated.status_code == 200, moderated.text
    assert moderated.json()["body"] == "mine"
    assert moderated.json()["internal"] is True
    assert (
        await client.delete(f"/comments/{comment['id']}", headers=admin_headers)
    ).status_code == 204


async def test_internal_comments_are_hidden_from_viewers_and_scopeless_clients(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    viewer = await make_user(client, admin_headers, "viewer")
    auditor = await make_user(client, admin_headers, "auditor")
    task = await make_task(client, admin_headers)
    await _post(client, task["id"], dev.headers, "customer-visible update")
    clock.set(T0 + timedelta(seconds=1))  # comments of one instant have no order between them
    internal = await _post(client, task["id"], dev.headers, "the root cause is ours", internal=True)

    both = ["customer-visible update", "the root cause is ours"]
    assert await _bodies(client, task["id"], dev.headers) == both
    assert await _bodies(client, task["id"], auditor.headers) == both
    assert await _bodies(client, task["id"], viewer.headers) == ["customer-visible update"]
    # A viewer cannot learn of it by its id either.
    assert_error(
        await client.patch(
            f"/comments/{internal['id']}", json={"body": "x"}, headers=viewer.headers
        ),
        403,
        "FORBIDDEN",
    )

    reader = await create_api_client(client, admin_headers, ["tasks:read"])
    token = await client_token(client, reader)
    assert token.status_code == 200, token.text
    assert await _bodies(client, task["id"], bearer(token.json()["access_token"])) == both
    reporter = await create_api_client(client, admin_headers, ["reports:read"])
    token = await client_token(client, reporter)
    refused = await client.get(
        f"/tasks/{task['id']}/comments", headers=bearer(token.json()["access_token"])
    )
    assert_error(refused, 403, "FORBIDDEN")


async def test_comments_page_with_a_cursor(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    task = await make_task(client, admin_headers)
    for n in range(5):
        clock.set(T0 + timedelta(minutes=n))
        await _post(client, task["id"], admin_headers, f"note {n}")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await client.get(
            f"/tasks/{task['id']}/comments", params=params, headers=admin_headers
        )
        assert page.status_code == 200, page.text
        seen += [c["body"] for c in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"note {n}" for n in range(5)]
    bad = await client.get(
        f"/tasks/{task['id']}/comments",
        params={"cursor": "bm90LWEtY3Vyc29y"},
        headers=admin_headers,
    )
    assert_error(bad, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"body": "nul \u0000 byte"}, 400, "VALIDATION_ERROR"),
        ({"body": "x" * 20_001}, 400, "VALIDATION_ERROR"),
        ({"body": "   \n\t "}, 400, "VALIDATION_ERROR"),
        ({"body": ""}, 400, "VALIDATION_ERROR"),
        ({"body": "ok", "internal": "yes"}, 400, "VALIDATION_ERROR"),
        ({"body": "ok", "author_id": str(uuid.uuid4())}, 400, "VALIDATION_ERROR"),
        ({"body": "y" * 2_000_000}, 413, "PAYLOAD_TOO_LARGE"),
    ],
    ids=["nul", "too-long", "blank", "empty", "non-boolean", "unknown-field", "huge-body"],
)
async def test_hostile_comments_are_refused_and_nothing_is_written(
    client: httpx.AsyncClient,
    admin_headers: Headers,
    app_context: AppContext,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    task = await make_task(client, admin_headers)
    comment = await _post(client, task["id"], admin_headers, "before")
    before = await _counts(app_context)
    response = await client.post(f"/tasks/{task['id']}/comments", json=body, headers=admin_headers)
    assert_error(response, status, code)
    patched = await client.patch(f"/comments/{comment['id']}", json=body, headers=admin_headers)
    assert_error(patched, status, code)
    assert await _counts(app_context) == before
    assert await _bodies(client, task["id"], admin_headers) == ["before"]


async def test_malformed_and_unknown_ids_answer_4xx(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    before = await _counts(app_context)
    for path in ("/tasks/not-a-uuid/comments", "/tasks/1%00/comments"):
        response = await client.post(path, json={"body": "x"}, headers=admin_headers)
        assert_error(response, 400, "VALIDATION_ERROR")
    assert_error(
        await client.patch("/comments/zzz", json={"body": "x"}, headers=admin_headers),
        400,
        "VALIDATION_ERROR",
    )
    missing = await client.post(
        f"/tasks/{uuid.uuid4()}/comments", json={"body": "x"}, headers=admin_headers
    )
    assert_error(missing, 404, "NOT_FOUND")
    assert_error(
        await client.delete(f"/comments/{uuid.uuid4()}", headers=admin_headers), 404, "NOT_FOUND"
    )
    assert await _counts(app_context) == before


async def test_mentions_notify_by_email_and_slack_with_who_what_and_where(
    client: httpx.AsyncClient,
    admin_headers: Headers,
    clock: SettableClock,
    app_context: AppContext,
    smtp: tuple[SmtpSink, int],
    slack: HttpSink,
) -> None:
    sink = smtp[0]
    team = await make_team(client, admin_headers)
    author = await make_user(client, admin_headers, "developer", team_id=team)
    dana = await make_user(client, admin_headers, "support", team_id=team)
    quiet = await make_user(client, admin_headers, "developer", team_id=team)
    viewer = await make_user(client, admin_headers, "viewer", team_id=team)
    # dana also wants mentions on Slack; quiet switched e-mail off.
    prefs = await client.put(
        "/users/me/notification-preferences",
        json={"preferences": [{"channel": "SLACK", "enabled": True}]},
        headers=dana.headers,
    )
    assert prefs.status_code == 200, prefs.text
    off = await client.put(
        "/users/me/notification-preferences",
        json={"preferences": [{"channel": "EMAIL", "enabled": False}]},
        headers=quiet.headers,
    )
    assert off.status_code == 200, off.text
    task = await make_task(client, admin_headers, title="Replica lag on db-2", team_id=team)
    await advance(app_context, clock, T0 + timedelta(seconds=1))
    sink.received.clear()
    slack.requests.clear()

    clock.set(T0 + timedelta(minutes=1))
    await _post(
        client,
        task["id"],
        author.headers,
        f"@{dana.username} can you check it? cc @{quiet.username} @{viewer.username} "
        f"@nobody-by-that-name and me @{author.username}",
    )
    await advance(app_context, clock, T0 + timedelta(minutes=2))

    mails = {tuple(r.rcpt_tos): r.message for r in sink.received}
    # dana by e-mail; quiet switched e-mail off; the viewer may read this public comment;
    # the writer is not told of their own mention.
    assert set(mails) == {(f"{dana.username}@example.com",), (f"{viewer.username}@example.com",)}
    mail = mails[(f"{dana.username}@example.com",)]
    author_name = author.username
    assert mail["Subject"] == f'{author_name} mentioned you on "Replica lag on db-2"'
    plain = mail.get_body(preferencelist=("plain",))
    assert plain is not None
    text = plain.get_content()
    assert f"{author_name} mentioned you in a comment" in text
    assert "can you check it?" in text
    assert f"https://ops.example.com/api/v1/tasks/{task['id']}" in text
    assert len(slack.requests) == 1
    post = slack.requests[0].body.decode()
    assert author_name in post
    assert "Replica lag on db-2" in post
    assert f"https://ops.example.com/api/v1/tasks/{task['id']}" in post

    # An internal comment reaches only those who may read it; an edit tells only the newly
    # mentioned.
    sink.received.clear()
    clock.set(T0 + timedelta(minutes=3))
    internal = await _post(
        client,
        task["id"],
        author.headers,
        f"@{viewer.username} @{dana.username} ours",
        internal=True,
    )
    await advance(app_context, clock, T0 + timedelta(minutes=4))
    assert [r.rcpt_tos for r in sink.received] == [[f"{dana.username}@example.com"]]
    sink.received.clear()
    edited = await client.patch(
        f"/comments/{internal['id']}",
        json={"body": f"@{viewer.username} @{dana.username} ours, see @admin"},
        headers=author.headers,
    )
    assert edited.status_code == 200, edited.text
    await advance(app_context, clock, T0 + timedelta(minutes=5))
    assert [r.rcpt_tos for r in sink.received] == [["admin@example.com"]]

    listed = await client.get(
        "/notifications",
        params={"task_id": task["id"], "notification_type": "comment.created"},
        headers=admin_headers,
    )
    assert listed.status_code == 200, listed.text
    assert {(n["recipient"], n["channel"]) for n in listed.json()["items"]} == {
        (dana.username, "EMAIL"),
        (dana.username, "SLACK"),
        (viewer.username, "EMAIL"),
    }


async def test_outbound_webhooks_carry_public_comments_only(
    client: httpx.AsyncClient,
    admin_headers: Headers,
    clock: SettableClock,
    app_context: AppContext,
    hooks: HttpSink,
) -> None:
    hook = await client.post(
        "/webhooks",
        json={"name": "chat-bridge", "url": f"{hooks.url}/hook", "event_types": ["comment.*"]},
        headers=admin_headers,
    )
    assert hook.status_code == 201, hook.text
    task = await make_task(client, admin_headers)
    await _post(client, task["id"], admin_headers, "public note")
    await _post(client, task["id"], admin_headers, "internal note", internal=True)
    await advance(app_context, clock, T0 + timedelta(minutes=1))
    delivered = [r.json() for r in hooks.requests if r.path == "/hook"]
    assert [d["type"] for d in delivered] == ["comment.created"]
    assert delivered[0]["data"]["comment"]["body"] == "public note"
    assert "internal note" not in str([r.body for r in hooks.requests])
