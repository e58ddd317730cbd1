"""GET /tasks: every filter, pagination and sorting.

Tasks are told apart by their titles; SLA states are produced by giving tasks different
targets and moving the clock, never by sleeping.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx

from opsflow.clock import SettableClock
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.models.task import Task
from tests.conftest import T0
from tests.factories import make_task, make_team, make_user

Headers = dict[str, str]


# --- helpers ------------------------------------------------------------------------------


def iso(instant: Any) -> str:
    return str(instant.strftime("%Y-%m-%dT%H:%M:%SZ"))


async def create(client: httpx.AsyncClient, headers: Headers, title: str, **fields: Any) -> str:
    return str((await make_task(client, headers, title=title, **fields))["id"])


async def act(
    client: httpx.AsyncClient,
    task_id: str,
    action: str,
    headers: Headers,
    body: dict[str, Any] | None = None,
) -> None:
    response = await client.patch(f"/tasks/{task_id}/{action}", json=body, headers=headers)
    assert response.status_code == 200, response.text


async def listing(
    client: httpx.AsyncClient, headers: Headers, params: Any = None
) -> dict[str, Any]:
    response = await client.get("/tasks", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def titles(client: httpx.AsyncClient, headers: Headers, params: Any = None) -> list[str]:
    """Titles of every matching task, in the order returned (one page of up to 100)."""
    query = list(params.items()) if isinstance(params, dict) else list(params or [])
    body = await listing(client, headers, [*query, ("page_size", 100)])
    assert body["pagination"]["total_items"] == len(body["items"])
    return [item["title"] for item in body["items"]]


async def title_set(client: httpx.AsyncClient, headers: Headers, params: Any = None) -> set[str]:
    found = await titles(client, headers, params)
    assert len(found) == len(set(found))
    return set(found)


def assert_validation_error(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


# --- shape and pagination -----------------------------------------------------------------


async def test_list_item_shape(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    dev = await make_user(client, admin_headers, "developer", username="jane.smith")
    task_id = await create(
        client,
        admin_headers,
        "Database connection pool exhaustion",
        task_type="INCIDENT",
        priority="CRITICAL",
        assigned_to=dev.id,
        start_sla_minutes=15,
        resolve_sla_minutes=120,
        tags=["database"],
    )
    clock.advance(minutes=5)
    await act(client, task_id, "start", dev.headers)
    body = await listing(client, admin_headers)
    assert body["pagination"] == {
        "page": 1,
        "page_size": 20,
        "total_items": 1,
        "total_pages": 1,
        "has_next": False,
        "has_previous": False,
    }
    [item] = body["items"]
    expected = {
        "id": task_id,
        "title": "Database connection pool exhaustion",
        "task_type": "INCIDENT",
        "priority": "CRITICAL",
        "status": "IN_PROGRESS",
        "assigned_to": {"id": dev.id, "username": "jane.smith", "full_name": "Jane.Smith"},
        "created_at": iso(T0),
        "started_at": iso(T0 + timedelta(minutes=5)),
        "tags": ["database"],
    }
    assert {key: item[key] for key in expected} == expected
    sla = item["sla_status"]
    assert sla["start_met"] is True
    assert sla["resolve_deadline"] == iso(T0 + timedelta(minutes=120))
    assert sla["time_remaining"] == "1 hour 55 minutes"
    assert sla["at_risk"] is False


async def test_pagination(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    names = [f"task-{n}" for n in range(1, 8)]
    for name in names:
        await create(client, admin_headers, name)
        clock.advance(minutes=1)

    async def page(number: int, size: int = 3) -> dict[str, Any]:
        return await listing(
            client,
            admin_headers,
            {"page": number, "page_size": size, "sort": "created_at", "order": "asc"},
        )

    first, second, third, beyond = [await page(n) for n in (1, 2, 3, 4)]
    assert [i["title"] for i in first["items"]] == names[0:3]
    assert [i["title"] for i in second["items"]] == names[3:6]
    assert [i["title"] for i in third["items"]] == names[6:7]
    assert beyond["items"] == []
    expectations = [
        (first, 1, True, False),
        (second, 2, True, True),
        (third, 3, False, True),
        (beyond, 4, False, True),
    ]
    for body, number, has_next, has_previous in expectations:
        assert body["pagination"] == {
            "page": number,
            "page_size": 3,
            "total_items": 7,
            "total_pages": 3,
            "has_next": has_next,
            "has_previous": has_previous,
        }

    exact = await page(1, size=7)
    assert exact["pagination"]["total_pages"] == 1
    assert exact["pagination"]["has_next"] is False
    widest = await page(1, size=100)
    assert len(widest["items"]) == 7

    for params in ({"page_size": 101}, {"page_size": 0}, {"page": 0}, {"page": "x"}):
        assert_validation_error(await client.get("/tasks", params=params, headers=admin_headers))


async def test_empty_listing(client: httpx.AsyncClient, admin_headers: Headers) -> None:
    body = await listing(client, admin_headers)
    assert body["items"] == []
    assert body["pagination"]["total_items"] == 0
    assert body["pagination"]["total_pages"] == 0
    assert body["pagination"]["has_next"] is False


# --- filters ------------------------------------------------------------------------------


async def test_filter_by_status(client: httpx.AsyncClient, admin_headers: Headers) -> None:
    dev = await make_user(client, admin_headers, "developer")
    await create(client, admin_headers, "created")
    await create(client, admin_headers, "assigned", assigned_to=dev.id)
    in_progress = await create(client, admin_headers, "in-progress", assigned_to=dev.id)
    await act(client, in_progress, "start", admin_headers)
    blocked = await create(client, admin_headers, "blocked", assigned_to=dev.id)
    await act(client, blocked, "start", admin_headers)
    await act(client, blocked, "block", admin_headers, {"reason": "vendor"})
    done = await create(client, admin_headers, "completed", assigned_to=dev.id)
    await act(client, done, "start", admin_headers)
    await act(client, done, "complete", admin_headers)
    cancelled = await create(client, admin_headers, "cancelled")
    assert (await client.delete(f"/tasks/{cancelled}", headers=admin_headers)).status_code == 204

    assert await title_set(client, admin_headers, {"status": "CREATED"}) == {"created"}
    assert await title_set(client, admin_headers, {"status": "IN_PROGRESS"}) == {"in-progress"}
    assert await title_set(
        client, admin_headers, [("status", "IN_PROGRESS"), ("status", "BLOCKED")]
    ) == {"in-progress", "blocked"}
    assert await title_set(
        client, admin_headers, [("status", "ASSIGNED"), ("status", "COMPLETED")]
    ) == {"assigned", "completed"}
    # Cancelled tasks are soft-deleted: only listed when asked for.
    assert await title_set(client, admin_headers, {"status": "CANCELLED"}) == set()
    assert await title_set(
        client, admin_headers, {"status": "CANCELLED", "include_deleted": "true"}
    ) == {"cancelled"}
    assert len(await title_set(client, admin_headers)) == 5
    assert len(await title_set(client, admin_headers, {"include_deleted": "true"})) == 6
    assert_validation_error(
        await client.get("/tasks", params={"status": "DONE"}, headers=admin_headers)
    )


async def test_filter_by_comma_separated_status_and_priority(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    dev = await make_user(client, admin_headers, "developer")
    await create(client, admin_headers, "created", priority="LOW")
    await create(client, admin_headers, "assigned", assigned_to=dev.id, priority="HIGH")
    third = await create(client, admin_headers, "in-progress", assigned_to=dev.id)
    await act(client, third, "start", admin_headers)
    assert await title_set(client, admin_headers, {"status": "CREATED,ASSIGNED"}) == {
        "created",
        "assigned",
    }
    assert await title_set(client, admin_headers, {"priority": "LOW,HIGH"}) == {
        "created",
        "assigned",
    }


async def test_filter_by_priority_and_task_type(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    await create(client, admin_headers, "low-task", priority="LOW", task_type="TASK")
    await create(client, admin_headers, "high-incident", priority="HIGH", task_type="INCIDENT")
    await create(
        client, admin_headers, "critical-incident", priority="CRITICAL", task_type="INCIDENT"
    )
    await create(client, admin_headers, "medium-task", priority="MEDIUM", task_type="TASK")

    assert await title_set(client, admin_headers, {"priority": "HIGH"}) == {"high-incident"}
    assert await title_set(
        client, admin_headers, [("priority", "LOW"), ("priority", "CRITICAL")]
    ) == {"low-task", "critical-incident"}
    assert await title_set(client, admin_headers, {"task_type": "INCIDENT"}) == {
        "high-incident",
        "critical-incident",
    }
    assert await title_set(client, admin_headers, {"task_type": "TASK"}) == {
        "low-task",
        "medium-task",
    }
    assert await title_set(
        client, admin_headers, {"task_type": "INCIDENT", "priority": "CRITICAL"}
    ) == {"critical-incident"}
    for params in ({"priority": "URGENT"}, {"task_type": "BUG"}):
        assert_validation_error(await client.get("/tasks", params=params, headers=admin_headers))


async def test_filter_by_assignee_includes_additional_assignees(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    first = await make_user(client, admin_headers, "developer")
    second = await make_user(client, admin_headers, "developer")
    nobody = await make_user(client, admin_headers, "developer")
    await create(client, admin_headers, "A", assigned_to=first.id, additional_assignees=[second.id])
    await create(client, admin_headers, "B", assigned_to=second.id)
    c = await create(client, admin_headers, "C")
    await act(
        client,
        c,
        "assign",
        admin_headers,
        {"assigned_to": second.id, "additional_assignees": [first.id]},
    )
    await create(client, admin_headers, "D")

    assert await title_set(client, admin_headers, {"assigned_to": first.id}) == {"A", "C"}
    assert await title_set(client, admin_headers, {"assigned_to": second.id}) == {"A", "B", "C"}
    assert await title_set(client, admin_headers, {"assigned_to": nobody.id}) == set()
    assert_validation_error(
        await client.get("/tasks", params={"assigned_to": "me"}, headers=admin_headers)
    )


async def test_filter_by_team_and_customer_tier(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    red = await make_team(client, admin_headers)
    blue = await make_team(client, admin_headers)
    member = await make_user(client, admin_headers, "developer", team_id=blue)
    await create(client, admin_headers, "red-enterprise", team_id=red, customer_tier="ENTERPRISE")
    await create(client, admin_headers, "red-premium", team_id=red, customer_tier="PREMIUM")
    # No team given: the task takes its assignee's team.
    await create(client, admin_headers, "blue-standard", assigned_to=member.id)
    await create(client, admin_headers, "no-team-basic", customer_tier="BASIC")

    assert await title_set(client, admin_headers, {"team_id": red}) == {
        "red-enterprise",
        "red-premium",
    }
    assert await title_set(client, admin_headers, {"team_id": blue}) == {"blue-standard"}
    assert await title_set(client, admin_headers, {"team_id": str(uuid.uuid4())}) == set()
    for tier, expected in (
        ("ENTERPRISE", {"red-enterprise"}),
        ("PREMIUM", {"red-premium"}),
        ("STANDARD", {"blue-standard"}),
        ("BASIC", {"no-team-basic"}),
    ):
        assert await title_set(client, admin_headers, {"customer_tier": tier}) == expected, tier
    assert await title_set(client, admin_headers, {"team_id": red, "customer_tier": "PREMIUM"}) == {
        "red-premium"
    }
    assert_validation_error(
        await client.get("/tasks", params={"customer_tier": "GOLD"}, headers=admin_headers)
    )


async def test_filter_by_sla_state_and_breach(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    """At T0+80 min each task sits in a known SLA state (start/resolve targets in minutes)."""
    targets = {
        "compliant": (1000, 2000),
        "start-warning": (100, 1000),  # 80 %
        "start-critical": (83, 1000),  # 96.4 %
        "start-breached": (60, 1000),
        "resolve-warning": (10, 100),  # started at +1: START met, RESOLVE at 80 %
        "resolve-critical": (10, 83),  # started at +1: RESOLVE at 96.4 %
        "late-start": (30, 1000),  # started at +50: START stopped, breached
        "completed-in-time": (10, 60),  # started +1, completed +30
        "completed-late": (10, 40),  # started +1, completed +50
    }
    ids: dict[str, str] = {}
    for name, (start, resolve) in targets.items():
        ids[name] = await create(
            client, admin_headers, name, start_sla_minutes=start, resolve_sla_minutes=resolve
        )
    clock.set(T0 + timedelta(minutes=1))
    for name in ("resolve-warning", "resolve-critical", "completed-in-time", "completed-late"):
        await act(client, ids[name], "start", admin_headers)
    clock.set(T0 + timedelta(minutes=30))
    await act(client, ids["completed-in-time"], "complete", admin_headers)
    clock.set(T0 + timedelta(minutes=50))
    await act(client, ids["late-start"], "start", admin_headers)
    await act(client, ids["completed-late"], "complete", admin_headers)

    clock.set(T0 + timedelta(minutes=80))
    expected = {
        "compliant": {"compliant", "completed-in-time"},
        "warning": {"start-warning", "resolve-warning"},
        "critical": {"start-critical", "resolve-critical"},
        "breached": {"start-breached", "late-start", "completed-late"},
    }
    await _check_states(client, admin_headers, expected)
    assert await title_set(client, admin_headers, {"has_breach": "true"}) == expected["breached"]
    assert (
        await title_set(client, admin_headers, {"has_breach": "false"})
        == set(targets) - expected["breached"]
    )
    assert await title_set(
        client, admin_headers, {"has_breach": "true", "status": "COMPLETED"}
    ) == {"completed-late"}

    # Time moves on: warnings turn critical, criticals breach.
    clock.set(T0 + timedelta(minutes=97))
    expected = {
        "compliant": {"compliant", "completed-in-time"},
        "warning": set(),
        "critical": {"start-warning", "resolve-warning"},
        "breached": {
            "start-breached",
            "late-start",
            "completed-late",
            "start-critical",
            "resolve-critical",
        },
    }
    await _check_states(client, admin_headers, expected)
    assert await title_set(client, admin_headers, {"has_breach": "false"}) == {
        "compliant",
        "completed-in-time",
        "start-warning",
        "resolve-warning",
    }
    assert_validation_error(
        await client.get("/tasks", params={"sla_state": "late"}, headers=admin_headers)
    )
    assert_validation_error(
        await client.get("/tasks", params={"has_breach": "perhaps"}, headers=admin_headers)
    )


async def _check_states(
    client: httpx.AsyncClient, headers: Headers, expected: dict[str, set[str]]
) -> None:
    for state, names in expected.items():
        body = await listing(client, headers, {"sla_state": state, "page_size": 100})
        found = {item["title"] for item in body["items"]}
        assert found == names, state
        # The SQL filter and the computed sla_status agree.
        assert {item["sla_status"]["state"] for item in body["items"]} <= {state}, state
        for item in body["items"]:
            at_risk = item["sla_status"]["at_risk"]
            if state in ("warning", "critical"):
                assert at_risk is True, item["title"]
            if state == "compliant":
                assert at_risk is False, item["title"]
            if state == "breached":
                assert item["sla_status"]["breach_count"] >= 1, item["title"]


async def test_filter_by_tags_matches_all_given(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    await create(client, admin_headers, "db-prod", tags=["db", "prod"])
    await create(client, admin_headers, "db", tags=["db"])
    await create(client, admin_headers, "prod-web", tags=["prod", "web"])
    await create(client, admin_headers, "untagged")

    assert await title_set(client, admin_headers, {"tags": "db"}) == {"db-prod", "db"}
    assert await title_set(client, admin_headers, {"tags": "prod"}) == {"db-prod", "prod-web"}
    assert await title_set(client, admin_headers, [("tags", "db"), ("tags", "prod")]) == {"db-prod"}
    assert await title_set(client, admin_headers, {"tags": "db,prod"}) == {"db-prod"}
    assert await title_set(client, admin_headers, {"tags": "prod,web"}) == {"prod-web"}
    assert await title_set(client, admin_headers, {"tags": "db,web"}) == set()
    assert await title_set(client, admin_headers, {"tags": "missing"}) == set()
    assert await title_set(client, admin_headers, {"tags": "d"}) == set()  # whole tags only


async def test_filter_by_tags_tolerates_spaces_after_commas(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    await create(client, admin_headers, "db-prod", tags=["db", "prod"])
    await create(client, admin_headers, "db", tags=["db"])
    assert await title_set(client, admin_headers, {"tags": "db, prod"}) == {"db-prod"}


async def test_text_search(client: httpx.AsyncClient, admin_headers: Headers) -> None:
    await create(client, admin_headers, "Database FAILOVER drill")
    await create(client, admin_headers, "Payments", description="Rehearse the failover of the DB")
    await create(client, admin_headers, "CPU at 100% on node-3")
    await create(client, admin_headers, "CPU at 1000 on node-4")
    await create(client, admin_headers, "disk_full alert")
    await create(client, admin_headers, "diskXfull alert")
    await create(client, admin_headers, "Unrelated", description="nothing to see")

    assert await title_set(client, admin_headers, {"q": "failover"}) == {
        "Database FAILOVER drill",
        "Payments",
    }
    assert await title_set(client, admin_headers, {"q": "FailOver Drill"}) == {
        "Database FAILOVER drill"
    }
    assert await title_set(client, admin_headers, {"q": "rehearse"}) == {"Payments"}
    # LIKE wildcards in the query are plain characters.
    assert await title_set(client, admin_headers, {"q": "100%"}) == {"CPU at 100% on node-3"}
    assert await title_set(client, admin_headers, {"q": "disk_full"}) == {"disk_full alert"}
    assert await title_set(client, admin_headers, {"q": "%"}) == {"CPU at 100% on node-3"}
    assert await title_set(client, admin_headers, {"q": "_"}) == {"disk_full alert"}
    assert await title_set(client, admin_headers, {"q": "no such words"}) == set()
    assert await title_set(client, admin_headers, {"q": "cpu", "priority": "MEDIUM"}) == {
        "CPU at 100% on node-3",
        "CPU at 1000 on node-4",
    }
    assert_validation_error(
        await client.get("/tasks", params={"q": "x" * 201}, headers=admin_headers)
    )


async def test_filter_by_external_id(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    first = await create(client, admin_headers, "from-jira")
    second = await create(client, admin_headers, "from-zendesk")
    await create(client, admin_headers, "local")
    # Ingestion (POST /tickets) is what sets source/external_id; write them directly here.
    async with unit_of_work(app_context.sessions) as session:
        for task_id, source, external_id in (
            (first, "jira", "OPS-101"),
            (second, "zendesk", "OPS-1010"),
        ):
            task = await session.get(Task, uuid.UUID(task_id))
            assert task is not None
            task.source = source
            task.external_id = external_id

    body = await listing(client, admin_headers, {"external_id": "OPS-101"})
    assert [i["title"] for i in body["items"]] == ["from-jira"]
    assert body["items"][0]["external_id"] == "OPS-101"
    assert await title_set(client, admin_headers, {"external_id": "OPS-1010"}) == {"from-zendesk"}
    assert await title_set(client, admin_headers, {"external_id": "OPS"}) == set()


async def test_filter_by_creation_time(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    for name in ("at-10:30", "at-11:30", "at-12:30"):
        await create(client, admin_headers, name)
        clock.advance(hours=1)

    assert await title_set(client, admin_headers, {"created_after": "2026-01-27T11:00:00Z"}) == {
        "at-11:30",
        "at-12:30",
    }
    assert await title_set(client, admin_headers, {"created_before": "2026-01-27T12:00:00Z"}) == {
        "at-10:30",
        "at-11:30",
    }
    assert await title_set(
        client,
        admin_headers,
        {"created_after": "2026-01-27T11:00:00Z", "created_before": "2026-01-27T12:00:00Z"},
    ) == {"at-11:30"}
    # Offsets are honoured: 12:00+01:00 is 11:00Z.
    assert await title_set(
        client, admin_headers, {"created_after": "2026-01-27T12:00:00+01:00"}
    ) == {"at-11:30", "at-12:30"}
    assert (
        await title_set(client, admin_headers, {"created_after": "2026-01-28T00:00:00Z"}) == set()
    )
    for params in ({"created_after": "2026-01-27T11:00:00"}, {"created_before": "yesterday"}):
        assert_validation_error(await client.get("/tasks", params=params, headers=admin_headers))


async def test_every_reader_sees_the_same_list(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    await create(client, admin_headers, "visible")
    for role in ("viewer", "auditor", "developer"):
        actor = await make_user(client, admin_headers, role)
        assert await title_set(client, actor.headers) == {"visible"}, role


# --- sorting ------------------------------------------------------------------------------


async def test_sort_by_created_and_updated_at(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    ids: dict[str, str] = {}
    for name in ("A", "B", "C", "D"):
        ids[name] = await create(client, admin_headers, name)
        clock.advance(minutes=1)
    for name in ("C", "A", "D", "B"):  # touched in this order
        clock.advance(minutes=1)
        response = await client.patch(
            f"/tasks/{ids[name]}", json={"description": "touched"}, headers=admin_headers
        )
        assert response.status_code == 200

    assert await titles(client, admin_headers) == ["D", "C", "B", "A"]  # default: newest first
    by_created = {"sort": "created_at"}
    assert await titles(client, admin_headers, {**by_created, "order": "asc"}) == list("ABCD")
    assert await titles(client, admin_headers, {**by_created, "order": "desc"}) == list("DCBA")
    by_updated = {"sort": "updated_at"}
    assert await titles(client, admin_headers, {**by_updated, "order": "asc"}) == list("CADB")
    assert await titles(client, admin_headers, {**by_updated, "order": "desc"}) == list("BDAC")


async def test_sort_by_priority(client: httpx.AsyncClient, admin_headers: Headers) -> None:
    for name in ("MEDIUM", "CRITICAL", "LOW", "HIGH"):
        await create(client, admin_headers, name, priority=name)
    assert await titles(client, admin_headers, {"sort": "priority", "order": "desc"}) == [
        "CRITICAL",
        "HIGH",
        "MEDIUM",
        "LOW",
    ]
    assert await titles(client, admin_headers, {"sort": "priority", "order": "asc"}) == [
        "LOW",
        "MEDIUM",
        "HIGH",
        "CRITICAL",
    ]


async def test_sort_by_deadline(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    """The deadline that matters: START's while unanswered, RESOLVE's after the start."""
    await create(
        client, admin_headers, "start-in-300", start_sla_minutes=300, resolve_sla_minutes=1000
    )
    await create(
        client, admin_headers, "start-in-100", start_sla_minutes=100, resolve_sla_minutes=1000
    )
    await create(
        client, admin_headers, "start-in-200", start_sla_minutes=200, resolve_sla_minutes=1000
    )
    started = await create(
        client, admin_headers, "resolve-in-400", start_sla_minutes=50, resolve_sla_minutes=400
    )
    clock.advance(minutes=10)
    await act(client, started, "start", admin_headers)
    soonest_first = ["start-in-100", "start-in-200", "start-in-300", "resolve-in-400"]
    assert (
        await titles(client, admin_headers, {"sort": "deadline", "order": "asc"}) == soonest_first
    )
    assert await titles(client, admin_headers, {"sort": "deadline", "order": "desc"}) == list(
        reversed(soonest_first)
    )


async def test_sorted_pages_do_not_overlap(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    """Many tasks share the same created_at and priority: pages still partition them."""
    for n in range(9):
        await create(client, admin_headers, f"same-{n}", priority="HIGH" if n % 2 else "LOW")
    for sort in ("created_at", "priority", "deadline", "updated_at"):
        for order in ("asc", "desc"):
            seen: list[str] = []
            for number in (1, 2, 3):
                body = await listing(
                    client,
                    admin_headers,
                    {"sort": sort, "order": order, "page": number, "page_size": 4},
                )
                seen.extend(item["id"] for item in body["items"])
            assert len(seen) == 9, (sort, order)
            assert len(set(seen)) == 9, (sort, order)


async def test_invalid_sort_or_order_is_rejected(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    for params in ({"sort": "title"}, {"order": "up"}, {"sort": "priority; DROP TABLE tasks"}):
        response = await client.get("/tasks", params=params, headers=admin_headers)
        assert_validation_error(response)
