"""The inbox with the settable clock: the tasks a person is part of (assigned, created,
commented on, watched), latest activity first, with unread comment counts that follow two
people commenting on each other's tasks; read markers (and the `inbox.read` event for the
reader's other sessions); watching; internal comments invisible to a viewer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from opsflow.clock import SettableClock
from opsflow.context import AppContext
from opsflow.models.outbox import OutboxEvent
from tests.conftest import T0, assert_error
from tests.factories import bearer, client_token, create_api_client, make_task, make_user

Headers = dict[str, str]


async def inbox(client: httpx.AsyncClient, headers: Headers, **params: Any) -> dict[str, Any]:
    response = await client.get("/inbox", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def counts(box: dict[str, Any]) -> list[tuple[str, int, list[str]]]:
    return [(i["task"]["title"], i["unread_count"], i["reasons"]) for i in box["items"]]


async def comment(
    client: httpx.AsyncClient, task_id: str, headers: Headers, body: str, **extra: Any
) -> None:
    response = await client.post(
        f"/tasks/{task_id}/comments", json={"body": body, **extra}, headers=headers
    )
    assert response.status_code == 201, response.text


async def test_unread_counts_for_two_people_commenting_on_each_others_tasks(
    client: httpx.AsyncClient,
    admin_headers: Headers,
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    ana = await make_user(client, admin_headers, "developer", username="ana")
    ben = await make_user(client, admin_headers, "support", username="ben")
    clock.set(T0)
    anas = await make_task(client, admin_headers, title="Ana's task", assigned_to=ana.id)
    clock.set(T0 + timedelta(minutes=1))
    bens = await make_task(client, admin_headers, title="Ben's task", assigned_to=ben.id)
    clock.set(T0 + timedelta(minutes=2))
    await make_task(client, admin_headers, title="Nobody's business")

    assert counts(await inbox(client, ana.headers)) == [("Ana's task", 0, ["assigned"])]

    clock.set(T0 + timedelta(minutes=3))
    await comment(client, bens["id"], ana.headers, "I can help with this")
    clock.set(T0 + timedelta(minutes=4))
    await comment(client, anas["id"], ben.headers, "Customer called again")
    clock.set(T0 + timedelta(minutes=5))
    await comment(client, anas["id"], ben.headers, "And again")

    box = await inbox(client, ana.headers)
    # Latest activity first: Ana's task had a comment at 10:35, Ben's at 10:33.
    assert counts(box) == [
        ("Ana's task", 2, ["assigned"]),
        ("Ben's task", 0, ["commented"]),  # her own comment is not unread
    ]
    assert (box["total"], box["unread_total"]) == (2, 2)
    assert box["items"][0]["last_activity_at"] == "2026-01-27T10:35:00Z"
    box = await inbox(client, ben.headers)
    assert counts(box) == [
        ("Ana's task", 0, ["commented"]),
        ("Ben's task", 1, ["assigned"]),
    ]
    assert (box["total"], box["unread_total"]) == (2, 1)

    clock.set(T0 + timedelta(minutes=6))
    read = await client.post(f"/tasks/{anas['id']}/read", headers=ana.headers)
    assert read.status_code == 200, read.text
    assert read.json() == {
        "task_id": anas["id"],
        "read_at": "2026-01-27T10:36:00Z",
        "unread_count": 0,
    }
    box = await inbox(client, ana.headers)
    assert counts(box) == [("Ana's task", 0, ["assigned"]), ("Ben's task", 0, ["commented"])]
    assert box["items"][0]["last_read_at"] == "2026-01-27T10:36:00Z"

    clock.set(T0 + timedelta(minutes=7))
    await comment(client, anas["id"], ben.headers, "Third time")
    clock.set(T0 + timedelta(minutes=8))
    await comment(client, bens["id"], ben.headers, "Thanks Ana")  # Ben replying on his task
    assert counts(await inbox(client, ana.headers)) == [
        ("Ben's task", 1, ["commented"]),
        ("Ana's task", 1, ["assigned"]),
    ]
    # Writing reads: Ben's own comment left nothing unread on his task for him.
    assert counts(await inbox(client, ben.headers)) == [
        ("Ben's task", 0, ["assigned", "commented"]),
        ("Ana's task", 0, ["commented"]),
    ]

    # The reader's other sessions hear of the read marker.
    async with app_context.read_sessions() as session:
        events = list(
            await session.scalars(select(OutboxEvent).where(OutboxEvent.event_type == "inbox.read"))
        )
    assert [(e.aggregate_type, str(e.aggregate_id)) for e in events] == [("user", ana.id)]
    assert events[0].payload["user_id"] == ana.id
    assert events[0].payload["task_id"] == anas["id"]

    # Paging keeps the order and the totals.
    first = await inbox(client, ana.headers, page_size=1)
    second = await inbox(client, ana.headers, page_size=1, page=2)
    assert [i["task"]["title"] for i in first["items"] + second["items"]] == [
        "Ben's task",
        "Ana's task",
    ]
    assert first["total"] == second["total"] == 2


async def test_watching_and_internal_comments_for_a_viewer(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    viewer = await make_user(client, admin_headers, "viewer")
    dev = await make_user(client, admin_headers, "developer")
    clock.set(T0)
    task = await make_task(client, admin_headers, title="Watched", assigned_to=dev.id)
    assert counts(await inbox(client, viewer.headers)) == []

    watch = await client.post(f"/tasks/{task['id']}/watch", headers=viewer.headers)
    assert watch.status_code == 200, watch.text
    assert watch.json() == {"task_id": task["id"], "watching": True}
    again = await client.post(f"/tasks/{task['id']}/watch", headers=viewer.headers)
    assert again.status_code == 200, again.text  # watching twice is watching
    assert counts(await inbox(client, viewer.headers)) == [("Watched", 0, ["watching"])]

    clock.set(T0 + timedelta(minutes=1))
    await comment(client, task["id"], dev.headers, "public")
    clock.set(T0 + timedelta(minutes=2))
    await comment(client, task["id"], dev.headers, "internal only", internal=True)
    box = await inbox(client, viewer.headers)
    assert counts(box) == [("Watched", 1, ["watching"])]
    # The internal comment is no activity the viewer can see.
    assert box["items"][0]["last_activity_at"] == "2026-01-27T10:31:00Z"
    assert box["unread_total"] == 1
    admin_box = await inbox(client, admin_headers)
    assert counts(admin_box) == [("Watched", 2, ["created"])]
    assert admin_box["items"][0]["last_activity_at"] == "2026-01-27T10:32:00Z"
    read = await client.post(f"/tasks/{task['id']}/read", headers=viewer.headers)
    assert read.json()["unread_count"] == 0

    unwatch = await client.delete(f"/tasks/{task['id']}/watch", headers=viewer.headers)
    assert unwatch.status_code == 204, unwatch.text
    assert counts(await inbox(client, viewer.headers)) == []
    assert (
        await client.delete(f"/tasks/{task['id']}/watch", headers=viewer.headers)
    ).status_code == 204


async def test_cancelled_tasks_leave_the_inbox_and_clients_have_none(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    task = await make_task(client, admin_headers, title="Soon gone", assigned_to=dev.id)
    assert counts(await inbox(client, dev.headers)) == [("Soon gone", 0, ["assigned"])]
    cancelled = await client.delete(f"/tasks/{task['id']}", headers=admin_headers)
    assert cancelled.status_code == 204, cancelled.text
    assert (await inbox(client, dev.headers))["total"] == 0

    creds = await create_api_client(client, admin_headers, ["tasks:read"])
    token = (await client_token(client, creds)).json()["access_token"]
    for response in (
        await client.get("/inbox", headers=bearer(token)),
        await client.post(f"/tasks/{task['id']}/read", headers=bearer(token)),
        await client.post(f"/tasks/{task['id']}/watch", headers=bearer(token)),
    ):
        error = assert_error(response, 403, "FORBIDDEN")
        assert error["required_scope"] is None
    for path in ("/tasks/not-a-uuid/read", "/tasks/not-a-uuid/watch"):
        assert_error(await client.post(path, headers=dev.headers), 400, "VALIDATION_ERROR")
