"""The reports' fast path (the quarter-hour rollups kept by triggers, PostgreSQL) against
the live path (the same reports computed from the task and clock rows alone), over random
histories.

Each example plays a random history through the API — tasks created at random instants
(off the quarter hours), acknowledged, started, completed, reopened, paused, resumed,
cancelled, moved to another priority, team, tier or set of tags, engine passes — then reads
every report both ways at several later moments (so open clocks pass their deadlines
without any write), over random periods (whole quarter hours or not, none at all, the
history's or a part of it), filters and time zones: the answers must be equal. Then
`opsflow reports rebuild` must find every rollup exact. The live path itself is checked
against a brute-force recomputation in test_reports_property.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from opsflow.clock import SettableClock
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.reports import rollups
from opsflow.reports import service as reports
from opsflow.reports.repository import ReportFilters
from opsflow.sla.engine import SlaEngine
from tests.factories import ADMIN_PASSWORD, login, make_team

ACTIONS = (
    "acknowledge",
    "start",
    "complete",
    "reopen",
    "sla/pause",
    "sla/resume",
    "cancel",
    "engine",
    "create",
    "priority",
    "team",
    "tier",
    "tags",
    "align",  # to the next quarter hour exactly: what happens next falls on a slot boundary
)
PRIORITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
TIERS = ("STANDARD", "ENTERPRISE")
TAGS = st.lists(st.sampled_from(["db", "network", "auth"]), max_size=3)

task_specs = st.fixed_dictionaries(
    {
        "task_type": st.sampled_from(["TASK", "INCIDENT"]),
        "priority": st.sampled_from(PRIORITIES),
        "customer_tier": st.sampled_from(TIERS),
        "start_sla_minutes": st.sampled_from([15, 60]),
        "resolve_sla_minutes": st.sampled_from([60, 240]),
        "tags": TAGS,
        "team": st.integers(0, 2),  # 2: no team
    }
)
steps = st.lists(
    st.tuples(
        st.integers(0, 7),  # which task
        st.sampled_from(ACTIONS),
        # minutes after the previous step: often none, so that clocks stop seconds apart
        # and share a duration bin (the percentiles then rank inside a bin)
        st.one_of(st.just(0), st.integers(0, 180)),
        st.integers(0, 59_999_999),  # and microseconds
        st.integers(0, 3),  # a value for priority / team / tier / tags changes
    ),
    min_size=8,  # enough stopped clocks for the percentiles to rank among
    max_size=30,
)
probes = st.lists(
    st.fixed_dictionaries(
        {
            "later_minutes": st.sampled_from([0, 7, 90, 600, 4 * 24 * 60]),
            "start_seconds": st.integers(-3600, 12 * 3600),
            "start_micro": st.integers(0, 999_999),
            "aligned": st.booleans(),  # the period starts (and mostly ends) on a slot boundary
            "length_seconds": st.sampled_from([1, 899, 900, 3 * 3600, 40 * 3600, 10 * 86400]),
            # Mostly none: the clocks' rollups serve the reports without a filter on tasks.
            "filter": st.sampled_from(
                ["none", "none", "none", "team", "priority", "task_type", "incident", "tier"]
            ),
            "tz": st.sampled_from(["UTC", "Europe/Paris", "Asia/Kolkata", "America/St_Johns"]),
            "group_by": st.sampled_from(["day", "week", "month"]),
        }
    ),
    min_size=2,
    max_size=4,
)


@pytest.fixture
def postgres(app_context: AppContext) -> None:
    if app_context.engine.dialect.name != "postgresql":
        pytest.skip("the rollups are kept on PostgreSQL")


async def _reports(
    context: AppContext, filters: ReportFilters, group_by: Any, now: Any
) -> dict[str, Any]:
    async with unit_of_work(context.sessions) as session:
        return {
            "summary": (await reports.sla_summary(session, filters, group_by, now)).model_dump(),
            "team": (await reports.team_performance(session, filters, now)).model_dump(),
            "incidents": (await reports.incidents(session, filters, now)).model_dump(),
            "compliance": (await reports.sla_compliance(session, filters, now)).model_dump(),
        }


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=st.lists(task_specs, min_size=1, max_size=8), history=steps, checks=probes)
async def test_the_fast_path_equals_the_live_path(
    postgres: None,
    client: httpx.AsyncClient,
    clock: SettableClock,
    app_context: AppContext,
    specs: list[dict[str, Any]],
    history: list[tuple[int, str, int, int, int]],
    checks: list[dict[str, Any]],
) -> None:
    clock.advance(timedelta(days=1, microseconds=123_457))
    headers = await login(client, "admin", ADMIN_PASSWORD)
    teams = [await make_team(client, headers, f"t-{uuid.uuid4().hex[:8]}") for _ in range(2)]
    origin = clock.now()
    ids: list[str] = []
    pending = list(specs)

    async def create() -> None:
        spec = pending.pop(0)
        body = {k: v for k, v in spec.items() if k != "team"}
        body["title"] = "t"
        if spec["team"] < 2:
            body["team_id"] = teams[spec["team"]]
        response = await client.post("/tasks", json=body, headers=headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

    await create()
    for index, action, minutes, micros, value in history:
        clock.advance(timedelta(minutes=minutes, microseconds=micros))
        if clock.now() - origin > timedelta(hours=20):  # tokens live a day
            headers, origin = await login(client, "admin", ADMIN_PASSWORD), clock.now()
        if action == "align":
            clock.advance(timedelta(seconds=-clock.now().timestamp() % 900))
            continue
        if action == "engine":
            await SlaEngine().run(app_context, batch=500)
            continue
        if action == "create":
            if pending:
                await create()
            continue
        path = f"/tasks/{ids[index % len(ids)]}"
        if action == "cancel":
            response = await client.delete(path, headers=headers)
        elif action in ("priority", "team", "tier", "tags"):
            changes: dict[str, dict[str, Any]] = {
                "priority": {"priority": PRIORITIES[value]},
                "team": {"team_id": teams[value % 2] if value < 2 else None},
                "tier": {"customer_tier": TIERS[value % 2]},
                "tags": {"tags": ["db", "auth", "db"][:value]},
            }
            response = await client.patch(path, json=changes[action], headers=headers)
        else:
            response = await client.patch(f"{path}/{action}", headers=headers)
        assert response.status_code in (200, 204, 409, 422), response.text
    while pending:
        await create()

    now = clock.now()
    start_of_history = now - timedelta(days=2)
    for check in checks:
        at = now + timedelta(minutes=check["later_minutes"])
        start = origin + timedelta(
            seconds=check["start_seconds"], microseconds=check["start_micro"]
        )
        if check["aligned"]:
            start -= timedelta(seconds=start.timestamp() % 900)
        if check["length_seconds"] == 10 * 86400:
            start = start_of_history  # the whole history and more
        end = start + timedelta(seconds=check["length_seconds"])
        chosen = check["filter"]
        filters = ReportFilters(
            start=start,
            end=end,
            tz=check["tz"],
            team_id=uuid.UUID(teams[0]) if chosen == "team" else None,
            priority="HIGH" if chosen == "priority" else None,
            task_type={"task_type": "TASK", "incident": "INCIDENT"}.get(chosen),
            customer_tier="ENTERPRISE" if chosen == "tier" else None,
        )
        fast = await _reports(app_context, filters, check["group_by"], at)
        with rollups.live_only():
            live = await _reports(app_context, filters, check["group_by"], at)
        assert fast == live, (filters, at)

    async with unit_of_work(app_context.sessions) as session:
        assert await rollups.rebuild(session) == 0
        assert await reports.rebuild(session) == 0


def test_a_period_splits_into_whole_quarter_hours_and_its_ends() -> None:
    at = datetime(2026, 3, 1, 10, 7, 30, 5, tzinfo=UTC)
    window = rollups.split(at, at + timedelta(hours=1))
    assert window.inner_start == datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
    assert window.inner_end == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    aligned = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    window = rollups.split(aligned, aligned + timedelta(minutes=15))
    assert (window.inner_start, window.inner_end) == (aligned, aligned + timedelta(minutes=15))
    assert not rollups.split(at, at + timedelta(minutes=10)).whole


async def test_the_rebuild_finds_and_repairs_a_wrong_rollup(
    postgres: None, client: httpx.AsyncClient, clock: SettableClock, app_context: AppContext
) -> None:
    headers = await login(client, "admin", ADMIN_PASSWORD)
    for priority in ("LOW", "HIGH"):
        body = {"title": "t", "priority": priority, "task_type": "INCIDENT", "tags": ["db"]}
        response = await client.post("/tasks", json=body, headers=headers)
        assert response.status_code == 201, response.text
        clock.advance(timedelta(hours=1))
    filters = ReportFilters(start=clock.now() - timedelta(days=1), end=clock.now())
    expected = await _reports(app_context, filters, "day", clock.now())
    async with unit_of_work(app_context.sessions) as session:
        await session.execute(text("UPDATE report_task_slots SET tasks = tasks + 1"))
        await session.execute(text("DELETE FROM report_tag_slots"))
    assert await _reports(app_context, filters, "day", clock.now()) != expected
    async with unit_of_work(app_context.sessions) as session:
        assert await rollups.rebuild(session) == 4  # two task groups, two tag groups
    async with unit_of_work(app_context.sessions) as session:
        assert await rollups.rebuild(session) == 0
    assert await _reports(app_context, filters, "day", clock.now()) == expected


async def test_the_percentiles_rank_inside_the_duration_bins(
    postgres: None, client: httpx.AsyncClient, clock: SettableClock, app_context: AppContext
) -> None:
    """Many durations a few seconds apart (several per bin) in whole days and at the
    period's ends: the percentiles read from the histograms are the live ones."""
    clock.advance(timedelta(days=1, seconds=-clock.now().timestamp() % 86400 + 3600))
    headers = await login(client, "admin", ADMIN_PASSWORD)
    ids = []
    for index in range(24):
        body = {"title": "t", "priority": "HIGH", "task_type": "INCIDENT"}
        response = await client.post("/tasks", json=body, headers=headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
        clock.advance(timedelta(seconds=7 + index))
    clock.advance(timedelta(minutes=50))
    for index, task_id in enumerate(ids):
        for action in ("acknowledge", "start", "complete")[: 1 + index % 3]:
            response = await client.patch(f"/tasks/{task_id}/{action}", headers=headers)
            assert response.status_code == 200, response.text
        clock.advance(timedelta(seconds=3 + index % 5))
    now = clock.now()
    for start in (now - timedelta(days=2), now - timedelta(hours=2)):
        filters = ReportFilters(start=start, end=now + timedelta(days=1, hours=5))
        fast = await _reports(app_context, filters, "day", now)
        with rollups.live_only():
            live = await _reports(app_context, filters, "day", now)
        assert fast["compliance"]["time_to_acknowledge"]["count"] == 24
        assert fast == live


CLOCK_STATUSES = ("ACTIVE", "PAUSED", "MET", "BREACHED", "CANCELLED")
# Durations in clusters a few seconds wide (several per bin), and the bins' edge cases.
DURATIONS = st.one_of(
    st.sampled_from([0.0, 0.5, 60.0, 3600.0]),
    st.builds(
        lambda base, jitter: base + jitter / 1e6,
        st.sampled_from([60, 3600, 90_000]),
        st.integers(-20_000_000, 20_000_000),
    ),
)
clock_states = st.fixed_dictionaries(
    {
        "start_minutes": st.integers(0, 3 * 24 * 60),
        "start_micro": st.sampled_from([0, 1, 999_999]),
        "stopped": st.booleans(),
        "wall": DURATIONS,
        "working": st.one_of(st.none(), DURATIONS),
        "deadline_minutes": st.integers(-30, 24 * 60),
        "cancelled": st.booleans(),
        "status": st.sampled_from(CLOCK_STATUSES),
        "paused": st.booleans(),
        "calendar": st.sampled_from([None, "emea", "us"]),
    }
)
TASKS_WITH_CLOCKS = 16


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    states=st.lists(clock_states, min_size=2 * TASKS_WITH_CLOCKS, max_size=2 * TASKS_WITH_CLOCKS),
    periods=st.lists(
        st.tuples(
            st.integers(-2 * 86400, 3 * 86400),  # start after the first day, seconds
            st.sampled_from([0, 1, 86399]),  # plus: on a day boundary or not
            st.sampled_from([3600, 86400, 2 * 86400 + 7, 6 * 86400]),  # length
            st.integers(0, 5 * 24 * 60),  # now, minutes after the first day
        ),
        min_size=2,
        max_size=4,
    ),
)
async def test_the_clock_rollups_equal_the_live_clocks(
    postgres: None,
    client: httpx.AsyncClient,
    clock: SettableClock,
    app_context: AppContext,
    states: list[dict[str, Any]],
    periods: list[tuple[int, int, int, int]],
) -> None:
    """Random clock states (stopped or not, met, breached, cancelled, paused, calendars;
    durations a few seconds apart, so several share a bin) written over the clocks of real
    tasks in one statement: sla-compliance read from the clock rollups and histograms equals
    the live one over random periods and moments, and the rebuild finds them exact."""
    async with unit_of_work(app_context.sessions) as session:
        have = int((await session.execute(text("SELECT count(*) FROM sla_clocks"))).scalar_one())
    if have < 2 * TASKS_WITH_CLOCKS:
        headers = await login(client, "admin", ADMIN_PASSWORD)
        for _ in range(TASKS_WITH_CLOCKS):
            response = await client.post("/tasks", json={"title": "t"}, headers=headers)
            assert response.status_code == 201, response.text
    day = datetime(2026, 3, 2, tzinfo=UTC)
    values = []
    for state in states:
        started = day + timedelta(minutes=state["start_minutes"], microseconds=state["start_micro"])
        stopped = started + timedelta(seconds=state["wall"]) if state["stopped"] else None
        values.append(
            {
                "started": started,
                "stopped": stopped,
                "working": state["working"] if stopped else None,
                "deadline": started + timedelta(minutes=state["deadline_minutes"]),
                "paused": started + timedelta(minutes=5) if state["paused"] else None,
                "cancelled": state["cancelled"],
                "status": state["status"],
                "calendar": state["calendar"],
            }
        )
    types = {
        "n": "bigint",
        "started": "timestamptz",
        "stopped": "timestamptz",
        "working": "float8",
        "deadline": "timestamptz",
        "paused": "timestamptz",
        "cancelled": "boolean",
        "status": "text",
        "calendar": "text",
    }
    rows = ", ".join(
        "(" + ", ".join(f"CAST(:{name}{i} AS {kind})" for name, kind in types.items()) + ")"
        for i in range(len(values))
    )
    params = {f"{k}{i}": v for i, value in enumerate(values) for k, v in value.items()}
    params.update({f"n{i}": i + 1 for i in range(len(values))})
    async with unit_of_work(app_context.sessions) as session:
        await session.execute(
            text(
                f"""UPDATE sla_clocks AS c SET started_at = v.started, stopped_at = v.stopped,
                    working_seconds = v.working, deadline = v.deadline, paused_at = v.paused,
                    cancelled = v.cancelled, status = v.status, calendar_name = v.calendar
                FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM sla_clocks) AS o
                JOIN (VALUES {rows}) AS v(n, started, stopped, working, deadline, paused,
                                         cancelled, status, calendar) ON v.n = o.n
                WHERE c.id = o.id"""
            ),
            params,
        )
    for offset, shift, length, now_minutes in periods:
        start = day + timedelta(seconds=offset - shift)
        filters = ReportFilters(start=start, end=start + timedelta(seconds=length))
        at = day + timedelta(minutes=now_minutes)
        async with unit_of_work(app_context.sessions) as session:
            fast = (await reports.sla_compliance(session, filters, at)).model_dump()
        with rollups.live_only():
            async with unit_of_work(app_context.sessions) as session:
                live = (await reports.sla_compliance(session, filters, at)).model_dump()
        assert fast == live, (filters, at)
    async with unit_of_work(app_context.sessions) as session:
        assert await rollups.rebuild(session) == 0
