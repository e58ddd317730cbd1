"""The reports' aggregate queries against a brute-force recomputation over random histories.

Each example builds its own team with a few tasks and a random history of actions and
engine passes, then reads the reports filtered to that team. The expected numbers are
computed here from the task and clock rows in Python: breaches by `sla.status.ClockView`
(the read side's rule), working time by walking the clock's calendar — never from the
stored `working_seconds` the reports read. Then `opsflow reports rebuild` must change
nothing: the stored values equal the recomputed ones.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from opsflow.clock import SettableClock
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.models.sla import SlaClock
from opsflow.models.task import Task
from opsflow.reports import service as reports_service
from opsflow.sla.calendar import working_seconds
from opsflow.sla.clocks import calendar_of, pause_intervals
from opsflow.sla.engine import SlaEngine
from opsflow.sla.status import ClockView
from tests.factories import ADMIN_PASSWORD, login, make_team

ACTIONS = ("acknowledge", "start", "complete", "reopen", "sla/pause", "sla/resume", "cancel")
OPEN = {"CREATED", "ASSIGNED", "IN_PROGRESS", "BLOCKED"}

task_specs = st.fixed_dictionaries(
    {
        "task_type": st.sampled_from(["TASK", "INCIDENT"]),
        "priority": st.sampled_from(["LOW", "MEDIUM", "HIGH", "CRITICAL"]),
        "customer_tier": st.sampled_from(["STANDARD", "ENTERPRISE"]),
        "start_sla_minutes": st.sampled_from([15, 60]),
        "resolve_sla_minutes": st.sampled_from([60, 240]),
        # MEDIUM incidents fall under the business-hours policy instead.
        "policy": st.booleans(),
    }
)
steps = st.lists(
    st.tuples(
        st.integers(0, 5),  # which task
        st.sampled_from([*ACTIONS, "engine"]),
        st.integers(1, 240),  # minutes after the previous step
    ),
    max_size=25,
)

OFFICE = {
    "name": "office",
    "timezone": "Europe/Paris",
    "hours": {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": [],
}


class State:
    headers: dict[str, str]


@pytest.fixture
async def office(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> State:
    assert (await client.post("/calendars", json=OFFICE, headers=admin_headers)).status_code == 201
    policy = {
        "name": "medium-incidents",
        "task_type": "INCIDENT",
        "priority": "MEDIUM",
        "start_minutes": 60,
        "resolve_minutes": 240,
        "calendar": "office",
    }
    response = await client.post("/sla-policies", json=policy, headers=admin_headers)
    assert response.status_code == 201, response.text
    state = State()
    state.headers = admin_headers
    return state


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    below = int(rank)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)


def _close(actual: Any, expected: Any) -> None:
    if expected is None or actual is None:
        assert actual == expected
    else:
        assert actual == pytest.approx(expected, abs=0.011)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=st.lists(task_specs, min_size=1, max_size=6), history=steps)
async def test_reports_equal_a_brute_force_recomputation(
    client: httpx.AsyncClient,
    clock: SettableClock,
    app_context: AppContext,
    office: State,
    specs: list[dict[str, Any]],
    history: list[tuple[int, str, int]],
) -> None:
    clock.advance(timedelta(days=3))
    headers = await login(client, "admin", ADMIN_PASSWORD)
    team_id = await make_team(client, headers, f"team-{uuid.uuid4().hex[:8]}")
    start = clock.now()
    ids = []
    for spec in specs:
        body = {k: v for k, v in spec.items() if k != "policy"}
        if spec["policy"]:
            body.update(task_type="INCIDENT", priority="MEDIUM")
            del body["start_sla_minutes"], body["resolve_sla_minutes"]
        body.update(title="t", team_id=team_id)
        response = await client.post("/tasks", json=body, headers=headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    signed_in = clock.now()
    for index, action, minutes in history:
        clock.advance(timedelta(minutes=minutes))
        if clock.now() - signed_in > timedelta(hours=20):  # tokens live a day
            headers, signed_in = await login(client, "admin", ADMIN_PASSWORD), clock.now()
        if action == "engine":
            await SlaEngine().run(app_context, batch=500)
            continue
        path = f"/tasks/{ids[index % len(ids)]}"
        if action == "cancel":
            response = await client.delete(path, headers=headers)
        else:
            response = await client.patch(f"{path}/{action}", headers=headers)
        assert response.status_code in (200, 204, 409), response.text
    clock.advance(timedelta(minutes=1))
    now = clock.now()
    headers = await login(client, "admin", ADMIN_PASSWORD)
    params = {
        "team_id": team_id,
        "start_date": start.isoformat().replace("+00:00", "Z"),
        "end_date": (now + timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
    }

    async def get(report: str) -> Any:
        response = await client.get(f"/reports/{report}", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    summary, compliance, team = (
        await get("sla-summary"),
        await get("sla-compliance"),
        await get("team-performance"),
    )

    async with unit_of_work(app_context.sessions) as session:
        tasks = (
            await session.scalars(select(Task).where(Task.team_id == uuid.UUID(team_id)))
        ).all()
        clocks = (
            await session.scalars(
                select(SlaClock).where(SlaClock.task_id.in_([t.id for t in tasks]))
            )
        ).all()
        by_task: dict[uuid.UUID, list[SlaClock]] = defaultdict(list)
        for c in clocks:
            by_task[c.task_id].append(c)
        views = {c.id: ClockView.of(c, now) for c in clocks}

        # --- sla-summary, brute force --------------------------------------------------
        breached = {t.id for t in tasks if any(views[c.id].breached for c in by_task[t.id])}
        done = [t for t in tasks if t.status == "COMPLETED"]
        overall = summary["overall_metrics"]
        assert overall["total_tasks"] == len(tasks)
        assert overall["completed_tasks"] == len(done)
        assert overall["in_progress_tasks"] == sum(t.status in OPEN for t in tasks)
        assert overall["cancelled_tasks"] == sum(t.status == "CANCELLED" for t in tasks)
        assert overall["total_breaches"] == len(breached)
        hours = [
            (t.completed_at - t.created_at).total_seconds() / 3600
            for t in done
            if t.completed_at is not None
        ]
        _close(overall["avg_completion_time_hours"], sum(hours) / len(hours) if hours else None)
        for row in summary["by_priority"]:
            group = [t for t in tasks if t.priority == row["priority"]]
            assert row["total"] == len(group)
            assert row["breaches"] == len([t for t in group if t.id in breached])
        assert sum(p["total"] for p in summary["time_series"]) == len(tasks)
        assert sum(p["breaches"] for p in summary["time_series"]) == len(breached)

        # --- sla-compliance, brute force -----------------------------------------------
        expected: dict[tuple[str, str], dict[str, int]] = defaultdict(
            lambda: {"met": 0, "breached": 0, "counting": 0, "cancelled": 0}
        )
        for c in clocks:
            view = views[c.id]
            key = (c.calendar_name or "24x7", c.kind)
            if view.breached:
                expected[key]["breached"] += 1
            elif c.stopped_at is None:
                expected[key]["counting"] += 1
            elif c.cancelled:
                expected[key]["cancelled"] += 1
            else:
                expected[key]["met"] += 1
        answered = {
            (r["calendar"], r["sla_type"]): {
                k: r[k] for k in ("met", "breached", "counting", "cancelled")
            }
            for r in compliance["compliance"]
        }
        assert answered == dict(expected)
        for kind, name in (("START", "time_to_acknowledge"), ("RESOLVE", "time_to_resolve")):
            stopped = [
                (c, c.stopped_at)
                for c in clocks
                if c.kind == kind and c.stopped_at is not None and not c.cancelled
            ]
            walls = [(end - c.started_at).total_seconds() / 60 for c, end in stopped]
            works = [
                working_seconds(
                    calendar_of(c.calendar_name, c.calendar_spec),
                    c.started_at,
                    max(end, c.started_at),
                    pause_intervals(c.pauses),
                )
                / 60
                for c, end in stopped
            ]
            durations = compliance[name]
            assert durations["count"] == len(stopped)
            for label, fraction in (("p50", 0.5), ("p90", 0.9), ("p95", 0.95)):
                _close(durations["wall_minutes"][label], _percentile(walls, fraction))
                _close(durations["working_minutes"][label], _percentile(works, fraction))

        # --- team-performance: the team row --------------------------------------------
        if tasks:
            (row,) = team["by_team"]
            assert row["assigned_tasks"] == len(tasks)
            assert row["sla_breaches"] == len(breached)
            weights = {"LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
            assert row["workload_score"] == sum(
                weights[t.priority] for t in tasks if t.status in OPEN
            )

        # --- the rebuild finds nothing to change ---------------------------------------
        assert await reports_service.rebuild(session) == 0
