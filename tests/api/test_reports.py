"""The reports against a hand-computed history (docs/reports.md defines every number).

Twenty-three tasks in the period (and one in the period before) built through the API
with the settable clock: responses in time and late, a paused clock, a reopened incident,
two cancellations, a business-hours calendar, two teams and responders in two time zones.
Minutes below count from T0 (Tuesday 2026-01-27 10:30 UTC); the reports are read on
Wednesday at 12:00 UTC (T0 + 1530 min).

Each line: tasks, created at, what happens, which clocks breach.

- A1-4 TASK MEDIUM alpha dev_a 60/240, at 0: ack+start 30, complete 120. None.
- B1-3 TASK HIGH beta dev_b ENTERPRISE 60/240, at 0: ack+start 90, complete 300. Both.
- C1 INCIDENT CRITICAL alpha dev_a ENTERPRISE [db] 15/120, at 0: ack+start 10, SLA
  paused 20-80, complete 150. None.
- C2 INCIDENT CRITICAL beta dev_b PREMIUM [db, network] 15/120, at 0: ack+start 5,
  complete 60, reopen 100, complete 200. RESOLVE.
- D1 INCIDENT HIGH alpha dev_a [network] 30/240, at 0: ack 15, cancelled 20. None.
- D2 INCIDENT HIGH alpha dev_a [network] 30/240, at 0: cancelled 45. START.
- E1-3 TASK LOW beta dev_b BASIC 60/480, at 0: E1 nothing (both), E2 ack 30 (RESOLVE),
  E3 SLA paused at 30 (none).
- G1-6 TASK LOW alpha, unassigned 60/240, at 60: start 70 (by the admin), complete 100.
- P1 INCIDENT MEDIUM beta dev_b [db] under the paris-office policy 60/240, Tuesday
  16:00 UTC: ack+start Wednesday 08:30, complete Wednesday 10:00. None.
- F1-2 INCIDENT LOW alpha dev_a [network] 60/600, Wednesday 03:00 UTC: F1 ack+start
  03:30 (none), F2 ack+start 06:10 (START).
- H INCIDENT LOW beta, Monday 10:00 UTC (the previous period): start 10:10, complete 11:00.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from opsflow.clock import SettableClock
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.models.sla import SlaClock
from opsflow.models.task import Task
from opsflow.reports import service as reports_service
from opsflow.sla.engine import SlaEngine
from tests.conftest import assert_error
from tests.factories import (
    ADMIN_PASSWORD,
    USER_PASSWORD,
    client_token,
    create_api_client,
    login,
    make_task,
    make_team,
    make_user,
)

T0 = datetime(2026, 1, 27, 10, 30, tzinfo=UTC)
NOW = T0 + timedelta(minutes=1530)
WINDOW = {"start_date": "2026-01-27T00:00:00Z", "end_date": "2026-01-29T00:00:00Z"}

PARIS_OFFICE = {
    "name": "paris-office",
    "timezone": "Europe/Paris",
    "hours": {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": [],
}


class World:
    def __init__(self, client: httpx.AsyncClient, clock: SettableClock, ctx: AppContext) -> None:
        self.client = client
        self.clock = clock
        self.ctx = ctx
        self.headers: dict[str, dict[str, str]] = {}
        self.ids: dict[str, str] = {}
        self.users: dict[str, Any] = {}
        self.teams: dict[str, Any] = {}

    async def sign_in(self) -> None:
        self.headers["admin"] = await login(self.client, "admin", ADMIN_PASSWORD)
        for name in self.users:
            self.headers[name] = await login(self.client, name, USER_PASSWORD)

    def at(self, minutes: float) -> None:
        self.clock.set(T0 + timedelta(minutes=minutes))

    async def engine(self) -> None:
        await SlaEngine().run(self.ctx, batch=500)

    async def create(self, name: str, **fields: Any) -> None:
        task = await make_task(self.client, self.headers["admin"], title=name, **fields)
        self.ids[name] = str(task["id"])

    async def act(self, who: str, action: str, *names: str) -> None:
        for name in names:
            path = f"/tasks/{self.ids[name]}"
            if action == "cancel":
                response = await self.client.delete(path, headers=self.headers[who])
            else:
                response = await self.client.patch(f"{path}/{action}", headers=self.headers[who])
            assert response.status_code in (200, 204), (name, action, response.text)


def _people(world: World, name: str, team: str) -> dict[str, Any]:
    return {"assigned_to": world.users[name].id, "team_id": world.teams[team]}


async def build(client: httpx.AsyncClient, clock: SettableClock, ctx: AppContext) -> World:
    w = World(client, clock, ctx)
    clock.set(datetime(2026, 1, 26, 9, 0, tzinfo=UTC))
    await w.sign_in()
    admin = w.headers["admin"]
    # A team name a spreadsheet would read as a formula: the CSV neutralises it.
    w.teams["alpha"] = await make_team(client, admin, "=alpha")
    w.teams["beta"] = await make_team(client, admin, "beta")
    for name, team in (("dev_a", "alpha"), ("dev_b", "beta"), ("dev_c", "beta")):
        w.users[name] = await make_user(
            client, admin, "developer", username=name, team_id=w.teams[team]
        )
    await w.sign_in()
    for name, zone in (("dev_a", "Europe/Paris"), ("dev_b", "America/New_York")):
        response = await client.put(
            "/users/me/notification-preferences",
            json={"preferences": [{"channel": "EMAIL", "timezone": zone}]},
            headers=w.headers[name],
        )
        assert response.status_code == 200, response.text
    response = await client.post("/calendars", json=PARIS_OFFICE, headers=admin)
    assert response.status_code == 201, response.text
    policy = {
        "name": "incident-medium-office",
        "task_type": "INCIDENT",
        "priority": "MEDIUM",
        "start_minutes": 60,
        "resolve_minutes": 240,
        "calendar": "paris-office",
    }
    response = await client.post("/sla-policies", json=policy, headers=admin)
    assert response.status_code == 201, response.text

    # Monday: the previous period's incident (MTTR 1 h).
    clock.set(datetime(2026, 1, 26, 10, 0, tzinfo=UTC))
    await w.create(
        "H", task_type="INCIDENT", priority="LOW", start_sla_minutes=60, resolve_sla_minutes=240
    )
    clock.set(datetime(2026, 1, 26, 10, 10, tzinfo=UTC))
    await w.act("admin", "start", "H")
    clock.set(datetime(2026, 1, 26, 11, 0, tzinfo=UTC))
    await w.act("admin", "complete", "H")

    w.at(0)
    await w.sign_in()
    sla = {"start_sla_minutes": 60, "resolve_sla_minutes": 240}
    for i in range(1, 5):
        await w.create(f"A{i}", priority="MEDIUM", **sla, **_people(w, "dev_a", "alpha"))
    for i in range(1, 4):
        await w.create(
            f"B{i}",
            priority="HIGH",
            customer_tier="ENTERPRISE",
            **sla,
            **_people(w, "dev_b", "beta"),
        )
    incident = {"task_type": "INCIDENT", "start_sla_minutes": 15, "resolve_sla_minutes": 120}
    await w.create(
        "C1",
        priority="CRITICAL",
        customer_tier="ENTERPRISE",
        tags=["db"],
        **incident,
        **_people(w, "dev_a", "alpha"),
    )
    await w.create(
        "C2",
        priority="CRITICAL",
        customer_tier="PREMIUM",
        tags=["db", "network"],
        **incident,
        **_people(w, "dev_b", "beta"),
    )
    for name in ("D1", "D2"):
        await w.create(
            name,
            task_type="INCIDENT",
            priority="HIGH",
            tags=["network"],
            start_sla_minutes=30,
            resolve_sla_minutes=240,
            **_people(w, "dev_a", "alpha"),
        )
    for name in ("E1", "E2", "E3"):
        await w.create(
            name,
            priority="LOW",
            customer_tier="BASIC",
            start_sla_minutes=60,
            resolve_sla_minutes=480,
            **_people(w, "dev_b", "beta"),
        )
    w.at(5)
    await w.act("dev_b", "acknowledge", "C2")
    await w.act("dev_b", "start", "C2")
    w.at(10)
    await w.act("dev_a", "acknowledge", "C1")
    await w.act("dev_a", "start", "C1")
    w.at(15)
    await w.act("dev_a", "acknowledge", "D1")
    w.at(20)
    await w.act("admin", "sla/pause", "C1")
    await w.act("admin", "cancel", "D1")
    w.at(30)
    a_tasks = [f"A{i}" for i in range(1, 5)]
    await w.act("dev_a", "acknowledge", *a_tasks)
    await w.act("dev_a", "start", *a_tasks)
    await w.act("dev_b", "acknowledge", "E2")
    await w.act("admin", "sla/pause", "E3")
    w.at(45)
    await w.act("admin", "cancel", "D2")
    w.at(60)
    g_tasks = [f"G{i}" for i in range(1, 7)]
    for name in g_tasks:
        await w.create(name, priority="LOW", **sla, team_id=w.teams["alpha"])
    await w.act("dev_b", "complete", "C2")
    w.at(70)
    await w.act("admin", "start", *g_tasks)
    await w.engine()
    w.at(80)
    await w.act("admin", "sla/resume", "C1")
    w.at(90)
    b_tasks = ["B1", "B2", "B3"]
    await w.act("dev_b", "acknowledge", *b_tasks)
    await w.act("dev_b", "start", *b_tasks)
    w.at(100)
    await w.act("admin", "complete", *g_tasks)
    await w.act("admin", "reopen", "C2")
    w.at(120)
    await w.act("dev_a", "complete", *a_tasks)
    w.at(150)
    await w.act("dev_a", "complete", "C1")
    w.at(200)
    await w.act("dev_b", "complete", "C2")
    w.at(250)
    await w.engine()
    w.at(300)
    await w.act("dev_b", "complete", *b_tasks)
    w.at(330)  # Tuesday 16:00 UTC, 17:00 in Paris: the office has closed
    await w.create(
        "P1", task_type="INCIDENT", priority="MEDIUM", tags=["db"], **_people(w, "dev_b", "beta")
    )
    w.at(500)
    await w.engine()
    w.at(990)  # Wednesday 03:00 UTC
    await w.sign_in()
    for name in ("F1", "F2"):
        await w.create(
            name,
            task_type="INCIDENT",
            priority="LOW",
            tags=["network"],
            start_sla_minutes=60,
            resolve_sla_minutes=600,
            **_people(w, "dev_a", "alpha"),
        )
    w.at(1020)
    await w.act("dev_a", "acknowledge", "F1")
    await w.act("dev_a", "start", "F1")
    w.at(1180)
    await w.act("dev_a", "acknowledge", "F2")
    await w.act("dev_a", "start", "F2")
    w.at(1320)  # Wednesday 08:30 UTC, 09:30 in Paris
    await w.act("dev_b", "acknowledge", "P1")
    await w.act("dev_b", "start", "P1")
    w.at(1410)
    await w.act("dev_b", "complete", "P1")
    w.at(1530)
    await w.engine()
    await w.sign_in()
    return w


@pytest.fixture
async def world(client: httpx.AsyncClient, clock: SettableClock, app_context: AppContext) -> World:
    return await build(client, clock, app_context)


async def _get(world: World, report: str, **params: Any) -> Any:
    response = await world.client.get(
        f"/reports/{report}", params={**WINDOW, **params}, headers=world.headers["admin"]
    )
    assert response.status_code == 200, response.text
    return response.json()


def _csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """The JSON answer as `section|item|field` keys, the way the CSV writes it."""
    out: dict[str, Any] = {}
    for section, inner in value.items():
        if isinstance(inner, list):
            for index, row in enumerate(inner, start=1):
                for field, cell in _fields(row):
                    out[f"{section}|{index}|{field}"] = cell
        elif isinstance(inner, dict):
            lists = {k: v for k, v in inner.items() if isinstance(v, list)}
            plain = {k: v for k, v in inner.items() if not isinstance(v, list)}
            for field, cell in _fields(plain):
                out[f"{section}||{field}"] = cell
            for key, rows in lists.items():
                for index, row in enumerate(rows, start=1):
                    for field, cell in _fields(row):
                        out[f"{section}.{key}|{index}|{field}"] = cell
        else:
            out[f"{section}||"] = inner
    return out


def _fields(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        result: list[tuple[str, Any]] = []
        for key, inner in value.items():
            result += _fields(inner, f"{prefix}.{key}" if prefix else key)
        return result
    return [(prefix, value)]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if isinstance(value, str) and text[:1] in "=+-@\t\r" and text else text


async def _check_csv(world: World, report: str, body: Any, **params: Any) -> list[list[str]]:
    response = await world.client.get(
        f"/reports/{report}",
        params={**WINDOW, **params, "format": "csv"},
        headers=world.headers["admin"],
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "\r\n" in response.text
    rows = _csv(response.text)
    assert rows[0] == ["section", "item", "field", "value"]
    written = {f"{s}|{i}|{f}": v for s, i, f, v in rows[1:]}
    expected = {key: _cell(value) for key, value in _flatten(body).items()}
    # Numbers read back as the same numbers; everything else cell for cell.
    assert written.keys() == expected.keys()
    for key, cell in expected.items():
        try:
            assert float(written[key]) == pytest.approx(float(cell)), key
        except ValueError:
            assert written[key] == cell, key
    return rows


async def test_reports_match_the_hand_computed_history(world: World) -> None:
    dev_a, dev_b = world.users["dev_a"], world.users["dev_b"]

    # --- sla-summary -------------------------------------------------------------------
    summary = await _get(world, "sla-summary")
    assert summary["period"] == {
        "start": "2026-01-27T00:00:00Z",
        "end": "2026-01-29T00:00:00Z",
        "tz": "UTC",
    }
    assert summary["overall_metrics"] == {
        "total_tasks": 23,
        "completed_tasks": 16,
        "in_progress_tasks": 5,
        "cancelled_tasks": 2,
        "completion_rate": 76.19,  # 16 of the 21 not cancelled
        "avg_completion_time_hours": 3.18,  # 50.83 h / 16
        "sla_breach_rate": 34.78,  # 8 of 23
        "total_breaches": 8,
    }
    assert summary["by_priority"] == [
        {
            "priority": "CRITICAL",
            "total": 2,
            "completed": 2,
            "breaches": 1,
            "breach_rate": 50.0,
            "avg_completion_time_hours": 2.92,
        },
        {
            "priority": "HIGH",
            "total": 5,
            "completed": 3,
            "breaches": 4,
            "breach_rate": 80.0,
            "avg_completion_time_hours": 5.0,
        },
        {
            "priority": "MEDIUM",
            "total": 5,
            "completed": 5,
            "breaches": 0,
            "breach_rate": 0.0,
            "avg_completion_time_hours": 5.2,
        },
        {
            "priority": "LOW",
            "total": 11,
            "completed": 6,
            "breaches": 3,
            "breach_rate": 27.27,
            "avg_completion_time_hours": 0.67,
        },
    ]
    assert summary["by_type"] == [
        {
            "task_type": "INCIDENT",
            "total": 7,
            "completed": 3,
            "breaches": 3,
            "breach_rate": 42.86,
            "avg_completion_time_hours": 7.94,
        },
        {
            "task_type": "TASK",
            "total": 16,
            "completed": 13,
            "breaches": 5,
            "breach_rate": 31.25,
            "avg_completion_time_hours": 2.08,
        },
    ]
    assert summary["time_series"] == [
        {"date": "2026-01-27", "total": 21, "completed": 16, "breaches": 7},
        {"date": "2026-01-28", "total": 2, "completed": 0, "breaches": 1},
    ]
    await _check_csv(world, "sla-summary", summary)

    # Days in other time zones: New York (the Wednesday 03:00 UTC tasks are Tuesday
    # evening's) and Tokyo (Tuesday 16:00 UTC is Wednesday 01:00; the period ends on
    # Thursday 09:00 there).
    new_york = await _get(world, "sla-summary", tz="America/New_York")
    assert [(p["date"], p["total"]) for p in new_york["time_series"]] == [
        ("2026-01-26", 0),
        ("2026-01-27", 23),
        ("2026-01-28", 0),
    ]
    tokyo = await _get(world, "sla-summary", tz="Asia/Tokyo")
    assert tokyo["time_series"] == [
        {"date": "2026-01-27", "total": 20, "completed": 15, "breaches": 7},
        {"date": "2026-01-28", "total": 3, "completed": 1, "breaches": 1},
        {"date": "2026-01-29", "total": 0, "completed": 0, "breaches": 0},
    ]
    weekly = await _get(world, "sla-summary", group_by="week")
    assert weekly["time_series"] == [
        {"date": "2026-01-26", "total": 23, "completed": 16, "breaches": 8}
    ]
    beta = await _get(world, "sla-summary", team_id=world.teams["beta"])
    assert beta["overall_metrics"]["total_tasks"] == 8
    enterprise = await _get(world, "sla-summary", customer_tier="ENTERPRISE")
    assert enterprise["overall_metrics"]["total_breaches"] == 3

    # --- team-performance --------------------------------------------------------------
    team = await _get(world, "team-performance")
    admin = (await world.client.get("/users/me", headers=world.headers["admin"])).json()
    assert team["team_metrics"] == [
        {
            "user": {"id": dev_b.id, "username": "dev_b", "full_name": _full(team, "dev_b")},
            "assigned_tasks": 8,
            "completed_tasks": 5,
            "in_progress_tasks": 3,
            "avg_completion_time_hours": 7.27,
            "sla_breaches": 6,
            "breach_rate": 75.0,
            "workload_score": 3,
        },
        {
            "user": {"id": dev_a.id, "username": "dev_a", "full_name": _full(team, "dev_a")},
            "assigned_tasks": 9,
            "completed_tasks": 5,
            "in_progress_tasks": 2,
            "avg_completion_time_hours": 2.1,
            "sla_breaches": 2,
            "breach_rate": 22.22,
            "workload_score": 2,
        },
        {
            # Starting a task assigns it to whoever starts it: the admin started G1-6.
            "user": {"id": admin["id"], "username": "admin", "full_name": admin["full_name"]},
            "assigned_tasks": 6,
            "completed_tasks": 6,
            "in_progress_tasks": 0,
            "avg_completion_time_hours": 0.67,
            "sla_breaches": 0,
            "breach_rate": 0.0,
            "workload_score": 0,
        },
    ]
    assert team["by_team"] == [
        {
            "team": {"id": world.teams["beta"], "name": "beta"},
            "assigned_tasks": 8,
            "completed_tasks": 5,
            "in_progress_tasks": 3,
            "avg_completion_time_hours": 7.27,
            "sla_breaches": 6,
            "breach_rate": 75.0,
            "workload_score": 3,
        },
        {
            "team": {"id": world.teams["alpha"], "name": "=alpha"},
            "assigned_tasks": 15,
            "completed_tasks": 11,
            "in_progress_tasks": 2,
            "avg_completion_time_hours": 1.32,
            "sla_breaches": 2,
            "breach_rate": 13.33,
            "workload_score": 2,
        },
    ]
    rows = await _check_csv(world, "team-performance", team)
    assert ["by_team", "2", "team.name", "'=alpha"] in rows

    # --- incidents ---------------------------------------------------------------------
    incidents = await _get(world, "incidents")
    assert incidents["incident_metrics"] == {
        "total_incidents": 7,
        "open_incidents": 2,
        "mttr_hours": 7.94,
        "previous_mttr_hours": 1.0,
        "mttr_trend": "worsening",
        "by_severity": {"CRITICAL": 2, "HIGH": 2, "MEDIUM": 1, "LOW": 2},
        "top_categories": [
            {"category": "network", "count": 5, "avg_resolution_hours": 3.33},
            {"category": "db", "count": 3, "avg_resolution_hours": 7.94},
        ],
    }
    await _check_csv(world, "incidents", incidents)

    # --- dashboard ---------------------------------------------------------------------
    dashboard = await _get(world, "dashboard")
    assert dashboard["generated_at"] == "2026-01-28T12:00:00Z"
    assert dashboard["realtime_stats"] == {
        "active_incidents": 2,
        "critical_incidents": 0,
        "tasks_at_risk": 2,  # F1 and F2: past 75 % of resolution, not breached
        "pending_escalations": 0,
        "team_utilization": 66.67,  # dev_a and dev_b busy, dev_c not
    }
    assert len(dashboard["recent_breaches"]) == 10  # of 11 breach events
    triggered = [b["triggered_at"] for b in dashboard["recent_breaches"]]
    assert triggered == sorted(triggered, reverse=True)
    deadlines = [
        (d["task_id"], d["sla_type"], d["deadline"], d["time_remaining"], d["at_risk"])
        for d in dashboard["upcoming_deadlines"]
    ]
    assert deadlines == sorted(
        (world.ids[n], "RESOLVE", "2026-01-28T13:00:00Z", 3600, True) for n in ("F1", "F2")
    )
    incident_board = await _get(world, "dashboard", task_type="INCIDENT")
    assert [
        (b["task_id"], b["breach_type"], b["delay_minutes"], b["triggered_at"])
        for b in incident_board["recent_breaches"]
    ] == [
        (world.ids["F2"], "START", 480, "2026-01-28T12:00:00Z"),
        (world.ids["C2"], "RESOLVE", 90, "2026-01-27T14:40:00Z"),
        (world.ids["D2"], "START", 40, "2026-01-27T11:40:00Z"),
    ]
    await _check_csv(world, "dashboard", incident_board, task_type="INCIDENT")

    # --- sla-compliance ----------------------------------------------------------------
    compliance = await _get(world, "sla-compliance")
    assert compliance["compliance"] == [
        {
            "calendar": "24x7",
            "sla_type": "START",
            "met": 15,
            "breached": 6,
            "counting": 1,
            "cancelled": 0,
            "compliance_rate": 71.43,
        },
        {
            "calendar": "24x7",
            "sla_type": "RESOLVE",
            "met": 11,
            "breached": 6,
            "counting": 3,
            "cancelled": 2,
            "compliance_rate": 64.71,
        },
        {
            "calendar": "paris-office",
            "sla_type": "START",
            "met": 1,
            "breached": 0,
            "counting": 0,
            "cancelled": 0,
            "compliance_rate": 100.0,
        },
        {
            "calendar": "paris-office",
            "sla_type": "RESOLVE",
            "met": 1,
            "breached": 0,
            "counting": 0,
            "cancelled": 0,
            "compliance_rate": 100.0,
        },
    ]
    assert compliance["time_to_acknowledge"] == {
        "count": 20,
        "mean_wall_minutes": 86.0,
        "wall_minutes": {"p50": 30.0, "p90": 100.0, "p95": 230.0},
        "working_minutes": {"p50": 30.0, "p90": 90.0, "p95": 95.0},
    }
    assert compliance["mtta_minutes"] == 86.0
    assert compliance["time_to_resolve"] == {
        "count": 16,
        "mean_wall_minutes": 190.62,
        "wall_minutes": {"p50": 120.0, "p90": 300.0, "p95": 495.0},
        "working_minutes": {"p50": 120.0, "p90": 300.0, "p95": 300.0},
    }
    assert compliance["breaches_by_tier"] == [
        {"customer_tier": "BASIC", "total": 3, "breaches": 2, "breach_rate": 66.67},
        {"customer_tier": "ENTERPRISE", "total": 4, "breaches": 3, "breach_rate": 75.0},
        {"customer_tier": "PREMIUM", "total": 1, "breaches": 1, "breach_rate": 100.0},
        {"customer_tier": "STANDARD", "total": 15, "breaches": 2, "breach_rate": 13.33},
    ]
    assert [
        tuple(i[k] for k in ("timezone", "total", "business_hours", "off_hours", "sleep_hours"))
        for i in compliance["interruptions"]
    ] == [
        ("Europe/Paris", 4, 2, 1, 1),  # dev_a
        ("America/New_York", 2, 0, 0, 2),  # dev_b
    ]
    assert [i["user"]["username"] for i in compliance["interruptions"]] == ["dev_a", "dev_b"]
    await _check_csv(world, "sla-compliance", compliance)


def _full(report: Any, username: str) -> Any:
    return next(
        r["user"]["full_name"] for r in report["team_metrics"] if r["user"]["username"] == username
    )


async def test_default_period_and_bad_filters(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    now = clock.now()
    response = await client.get("/reports/sla-summary", headers=admin_headers)
    assert response.status_code == 200, response.text
    period = response.json()["period"]
    assert datetime.fromisoformat(period["end"]) == now
    assert datetime.fromisoformat(period["start"]) == now - timedelta(days=30)
    assert len(response.json()["time_series"]) == 31
    bad = [
        {"tz": "Mars/Olympus"},
        {"priority": "URGENT"},
        {"task_type": "BUG"},
        {"customer_tier": "GOLD"},
        {"team_id": "not-a-uuid"},
        {"group_by": "year"},
        {"format": "xml"},
        {"start_date": "2026-01-27"},
        {"start_date": "2026-01-27T00:00:00Z", "end_date": "2026-01-26T00:00:00Z"},
        {"start_date": "2020-01-01T00:00:00Z", "end_date": "2026-01-01T00:00:00Z"},
    ]
    for params in bad:
        assert_error(
            await client.get("/reports/sla-summary", params=params, headers=admin_headers),
            400,
            "VALIDATION_ERROR",
        )


async def test_rebuild_restores_what_the_reports_read(world: World) -> None:
    """Stored working times and breach instants that went missing (a bulk load) or wrong
    come back exactly."""
    reports = ("sla-compliance", "sla-summary", "team-performance", "incidents")
    before = [await _get(world, report) for report in reports]
    async with unit_of_work(world.ctx.sessions) as session:
        assert await reports_service.rebuild(session) == 0
        marked = await session.scalar(
            select(func.count()).select_from(Task).where(Task.sla_breach_at.is_not(None))
        )
        await session.execute(update(SlaClock).values(working_seconds=None))
        await session.execute(update(Task).values(sla_breach_at=None))
    async with unit_of_work(world.ctx.sessions) as session:
        changed = await reports_service.rebuild(session)
    # 20 responses and 16 resolutions of the period, 3 clocks stopped by a cancellation
    # (D1 RESOLVE, D2 both) and H's two clocks in the period before; every task with a
    # breach instant.
    assert marked
    assert changed == 20 + 16 + 3 + 2 + marked
    assert [await _get(world, report) for report in reports] == before


async def test_api_clients_read_reports_with_the_reports_scope(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for scopes, status in ((["reports:read"], 200), (["tasks:read"], 403)):
        creds = await create_api_client(client, admin_headers, scopes)
        token = (await client_token(client, creds)).json()["access_token"]
        response = await client.get(
            "/reports/dashboard", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == status, response.text
