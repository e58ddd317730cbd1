"""How many SQL statements the hottest requests run: a read of a task, a page of tasks, the
caller's profile. Counted, not timed: each statement costs a round trip and CPU, and a
change that adds one (an N+1, a relation loaded lazily) should be a deliberate one.

The answers are checked too: what the fewer statements load must still be all the answer
shows (clocks, additional assignees in their order, people, audit trail, SLA events)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, timedelta
from typing import Any

import httpx
from sqlalchemy import event

from opsflow.clock import SettableClock
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.tasks import reads, repository
from tests.api.tasks_support import Headers, act, create_task
from tests.conftest import assert_error
from tests.factories import advance, make_user


@contextmanager
def counted(app_context: AppContext) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = app_context.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _sql(statements: list[str]) -> list[str]:
    # SQLite transactions show up as cursor statements of their own; they are not queries.
    return [s for s in statements if s.split()[0].upper() not in {"BEGIN", "COMMIT", "ROLLBACK"}]


async def test_reading_a_task_takes_one_statement(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    first = await make_user(client, admin_headers, "developer")
    second = await make_user(client, admin_headers, "developer")
    task = await create_task(client, admin_headers, assigned_to=dev.id)
    assigned = await act(
        client,
        task["id"],
        "assign",
        admin_headers,
        {"assigned_to": dev.id, "additional_assignees": [second.id, first.id]},
    )
    await client.get("/auth/me", headers=admin_headers)  # the caller, resolved once

    with counted(app_context) as statements:
        response = await client.get(f"/tasks/{task['id']}", headers=admin_headers)

    assert response.status_code == 200
    body = response.json()
    assert body["assigned_to"]["id"] == dev.id
    assert body["created_by"]["username"] == "admin"
    extras = [u["id"] for u in body["additional_assignees"]]
    assert sorted(extras) == sorted([first.id, second.id])
    assert extras == [u["id"] for u in assigned.json()["additional_assignees"]]
    assert body["sla_status"]["start_deadline"] is not None
    assert body["sla_status"]["resolve_deadline"] is not None
    assert [row["action"] for row in body["audit_trail"]] == ["TASK_CREATED", "TASK_ASSIGNED"]
    assert body["sla_events"] == []
    # the task with its two clocks, its additional assignees, its people, its SLA events
    # and its audit trail, each as an array of rows (PostgreSQL) or a JSON array (SQLite)
    assert len(_sql(statements)) == 1, statements


async def test_the_one_statement_read_gives_what_the_separate_reads_give(
    client: httpx.AsyncClient,
    admin_headers: Headers,
    app_context: AppContext,
    clock: SettableClock,
) -> None:
    # Values that a conversion could get wrong: text beyond ASCII with quotes and
    # backslashes, JSON with floats, big integers and nesting, several people, SLA events
    # and an audit trail.
    dev = await make_user(client, admin_headers, "developer")
    first = await make_user(client, admin_headers, "developer")
    second = await make_user(client, admin_headers, "developer")
    task = await create_task(
        client,
        admin_headers,
        title="Zürich “quoted” \\ ✓",
        assigned_to=dev.id,
        metadata={"ratio": 0.1, "big": 10**18, "nested": {"ä": [1, 2.5, None, True]}},
    )
    await act(
        client,
        task["id"],
        "assign",
        admin_headers,
        {"assigned_to": dev.id, "additional_assignees": [second.id, first.id]},
    )
    response = await client.patch(
        f"/tasks/{task['id']}", json={"title": 'Ünïcode 𝄞 "again"'}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    await advance(app_context, clock, clock.now() + timedelta(days=3))
    task_id = uuid.UUID(task["id"])

    async with unit_of_work(app_context.sessions) as session:
        one = await reads.task_page(session, task_id, with_audit_trail=True)
    async with unit_of_work(app_context.sessions) as session:
        task_row = await repository.get_with_clocks(session, task_id)
        assert task_row is not None
        parts = await reads.page_of(session, task_row, with_audit_trail=True)

    assert one is not None
    assert one.extras == parts.extras
    assert sorted(one.extras) == sorted([uuid.UUID(second.id), uuid.UUID(first.id)])
    assert one.people == parts.people
    assert len(one.people) == 4  # the creator, the assignee, the additional two
    assert one.events == parts.events
    assert one.events, "the clocks breached: their events are part of the page"
    assert one.trail == parts.trail
    assert one.trail is not None
    assert len(one.trail) >= 3
    assert all(entry.timestamp.tzinfo is UTC for entry in one.trail)


async def test_a_missing_task_is_404_after_one_statement(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    await client.get("/auth/me", headers=admin_headers)
    with counted(app_context) as statements:
        response = await client.get(
            "/tasks/00000000-0000-0000-0000-000000000000", headers=admin_headers
        )
    assert_error(response, 404, "NOT_FOUND")
    assert len(_sql(statements)) == 1, statements


async def test_a_page_of_tasks_takes_one_statement(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    for _ in range(5):
        await create_task(client, admin_headers, priority="HIGH", assigned_to=dev.id)
    await client.get("/auth/me", headers=admin_headers)

    with counted(app_context) as statements:
        response = await client.get("/tasks?page_size=3&sort=deadline", headers=admin_headers)

    assert response.status_code == 200
    body = response.json()
    assert body["pagination"]["total_items"] == 5
    assert len(body["items"]) == 3
    for item in body["items"]:
        assert item["sla_status"]["start_deadline"] is not None
        assert item["sla_status"]["state"] == "compliant"
    assert {item["assigned_to"]["id"] for item in body["items"]} == {dev.id}
    # the page with its clocks, its assignees and the count of the whole search
    assert len(_sql(statements)) == 1, statements


async def test_a_page_past_the_last_counts_in_a_second_statement(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    for _ in range(3):
        await create_task(client, admin_headers)
    await client.get("/auth/me", headers=admin_headers)

    with counted(app_context) as statements:
        response = await client.get("/tasks?page_size=2&page=3", headers=admin_headers)

    assert response.status_code == 200
    body = response.json()
    assert body["items"] == []
    assert body["pagination"]["total_items"] == 3
    assert body["pagination"]["has_previous"] is True
    # no row came to carry the count: it is asked for on its own
    assert len(_sql(statements)) == 2, statements


def _reading(statements: list[str], table: str) -> list[str]:
    return [s for s in _sql(statements) if s.lstrip().upper().startswith("SELECT") and table in s]


async def test_a_create_reads_no_policy_while_the_configuration_stays(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    await create_task(client, admin_headers)  # loads the process's policy catalog

    with counted(app_context) as statements:
        task = await create_task(client, admin_headers, priority="HIGH")

    assert task["start_sla_minutes"] > 0
    assert _reading(statements, "sla_policies") == [], statements
    # the configuration's version, and nothing else of the SLA configuration
    assert len(_reading(statements, "sla_settings")) == 1, statements


async def test_a_start_reads_the_people_it_answers_with_its_assignees(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    extra = await make_user(client, admin_headers, "developer")
    task = await create_task(
        client, admin_headers, assigned_to=dev.id, additional_assignees=[extra.id]
    )
    await client.get("/auth/me", headers=admin_headers)

    with counted(app_context) as statements:
        response = await client.patch(f"/tasks/{task['id']}/start", headers=admin_headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "IN_PROGRESS"
    assert body["assigned_to"]["id"] == dev.id
    assert body["created_by"]["username"] == "admin"
    assert [u["id"] for u in body["additional_assignees"]] == [extra.id]
    # one statement for the users and the additional assignees, before the change; the
    # answer reads none
    people = _reading(statements, "FROM users")
    assert len(people) == 1, statements
    assert _reading(statements, "task_assignees") == people, statements
