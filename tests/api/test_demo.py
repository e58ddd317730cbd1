"""`opsflow demo`: a month of history that holds every invariant the live system keeps."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from opsflow.app import create_app
from opsflow.audit import service as audit_service
from opsflow.cli import app as cli
from opsflow.clock import SettableClock
from opsflow.config import Settings
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.demo.loader import NotEmpty, load_demo
from opsflow.escalation.engine import EscalationEngine
from opsflow.models.audit import AuditLog
from opsflow.models.collaboration import Comment
from opsflow.models.enums import ClockStatus, Role
from opsflow.models.escalation import EscalationEvent
from opsflow.models.notification import Notification
from opsflow.models.outbox import OutboxEvent
from opsflow.models.sla import SlaClock, SlaEvent
from opsflow.models.task import Task
from opsflow.models.user import User
from opsflow.sla.clocks import plan_of
from opsflow.sla.engine import SlaEngine
from tests.factories import login

PASSWORD = "demo-password-42"


async def test_a_demo_month_holds_every_invariant(
    settings: Settings, app_context: AppContext, clock: SettableClock
) -> None:
    end = clock.now()
    summary = await load_demo(app_context, tasks=200, seed=7, password=PASSWORD)
    assert summary.tasks == 200
    assert summary.rebuilt == 0  # what the reports keep beside the rows was stored exactly
    assert summary.end == end
    assert summary.start == end - timedelta(days=30)

    async with unit_of_work(app_context.read_sessions) as session:
        verification = await audit_service.verify(session, end)
        assert verification.valid, verification
        assert verification.checked > 200

        roles = set(await session.scalars(select(User.role)))
        assert roles == {role.value for role in Role}

        tasks = list(await session.scalars(select(Task)))
        assert len(tasks) == 200
        assert all(end - timedelta(days=30) <= t.created_at < end for t in tasks)
        clocks = list(await session.scalars(select(SlaClock)))
        assert sorted((c.task_id, c.kind) for c in clocks) == sorted(
            (t.id, kind) for t in tasks for kind in ("RESOLVE", "START")
        )
        by_task = {t.id: t for t in tasks}
        for sla_clock in clocks:
            # Stored instants are what the clock's own plan says.
            assert sla_clock.deadline == plan_of(sla_clock).deadline
            task = by_task[sla_clock.task_id]
            kind = "start" if sla_clock.kind == "START" else "resolve"
            assert getattr(task, f"{kind}_deadline") == sla_clock.deadline
        events = list(await session.scalars(select(SlaEvent)))
        breaches = {e.clock_id for e in events if e.event_type.endswith("_BREACH")}
        breached = [c for c in clocks if c.status == ClockStatus.BREACHED]
        assert breached, "a month of history has breaches"
        assert {c.id for c in breached if c.next_fire_at is None} <= breaches
        statuses = {t.status for t in tasks}
        assert {"COMPLETED", "IN_PROGRESS"} <= statuses
        assert any(c.pauses for c in clocks), "some clocks were paused"
        kinds = {e.event_type.rsplit("_", 1)[-1] for e in events}
        assert kinds == {"WARNING", "CRITICAL", "BREACH", "ESCALATION"}

        # A START breach nobody had answered escalated to the team lead (the default run),
        # unless the answer came first.
        steps = list(await session.scalars(select(EscalationEvent)))
        assert "FIRED" in {s.status for s in steps}
        recent = end - timedelta(seconds=2)
        assert all(s.status in ("FIRED", "CANCELLED") or s.fire_at > recent for s in steps)
        fired = {s.id for s in steps if s.status == "FIRED"}
        escalated = {
            uuid.UUID(e.metadata_["escalation_event_id"])
            for e in events
            if e.event_type == "ESCALATION"
        }
        assert fired == escalated

        # Every event was relayed; streamed ones are numbered 1..n without gaps.
        unpublished = await session.scalar(
            select(func.count()).where(OutboxEvent.published_at.is_(None))
        )
        assert unpublished == 0
        numbers = sorted(
            n for n in await session.scalars(select(OutboxEvent.stream_seq)) if n is not None
        )
        assert numbers == list(range(1, len(numbers) + 1))

    # The SLA engine, run now, has nothing left to catch up on but what came due in the
    # last moments before the end (the engine runs a moment behind).
    # The same for the escalation engine.
    report = await SlaEngine().run(app_context, batch=10_000)
    steps_report = await EscalationEngine().run(app_context, batch=10_000)
    async with unit_of_work(app_context.read_sessions) as session:
        late = await session.scalar(
            select(func.count()).where(
                SlaEvent.triggered_at == end, SlaEvent.due_at < end - timedelta(seconds=2)
            )
        )
    assert late == 0, (report, steps_report)

    # The API serves the month: a demo manager logs in with the demo password.
    application = create_app(settings, context=app_context)
    manager = next(iter(summary.usernames[Role.MANAGER.value]))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver/api/v1"
        ) as client:
            headers = await login(client, manager, PASSWORD)
            listed = await client.get("/tasks", headers=headers, params={"page_size": 5})
            assert listed.status_code == 200, listed.text
            assert listed.json()["pagination"]["total_items"] > 150  # cancelled ones are not listed
            verified = await client.get("/audit-logs/verify", headers=headers)
            assert verified.status_code in (200, 403)


async def test_the_demo_refuses_a_database_with_data(app_context: AppContext) -> None:
    await load_demo(app_context, tasks=3, seed=1, password=PASSWORD)
    with pytest.raises(NotEmpty):
        await load_demo(app_context, tasks=3, seed=1, password=PASSWORD)
    summary = await load_demo(app_context, tasks=4, seed=2, password=PASSWORD, replace=True)
    async with unit_of_work(app_context.read_sessions) as session:
        assert await session.scalar(select(func.count()).select_from(Task)) == 4
    assert summary.tasks == 4


def test_the_command_exits_non_zero_on_a_database_with_data(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("OPSFLOW_PASSWORD_TIME_COST", "1")
    monkeypatch.setenv("OPSFLOW_PASSWORD_MEMORY_COST_KIB", "1024")
    runner = CliRunner()
    first = runner.invoke(cli, ["demo", "--tasks", "5", "--password", PASSWORD])
    assert first.exit_code == 0, first.output
    assert f"password: {PASSWORD}" in first.output
    second = runner.invoke(cli, ["demo", "--tasks", "5"])
    assert second.exit_code == 1
    assert "not empty" in second.output


async def test_the_same_seed_gives_the_same_month(app_context: AppContext) -> None:
    async def history() -> list[tuple[object, ...]]:
        async with unit_of_work(app_context.read_sessions) as session:
            rows = await session.execute(
                select(
                    Task.title, Task.created_at, Task.status, Task.priority, Task.completed_at
                ).order_by(Task.created_at)
            )
            return [tuple(row) for row in rows]

    await load_demo(app_context, tasks=40, seed=11, password=PASSWORD)
    first = await history()
    await load_demo(app_context, tasks=40, seed=11, password=PASSWORD, replace=True)
    assert await history() == first
    await load_demo(app_context, tasks=40, seed=12, password=PASSWORD, replace=True)
    assert await history() != first


async def test_copied_histories_keep_the_chain_and_their_own_ids(
    app_context: AppContext, clock: SettableClock
) -> None:
    """Most tasks of a large month are shifted copies of a played one: fresh ids
    everywhere, instants moved with the creation, audit rows chained like the others,
    notifications written for the events that notify."""
    end = clock.now()
    summary = await load_demo(app_context, tasks=240, seed=5, password=PASSWORD, played=30)
    assert summary.tasks == 240
    async with unit_of_work(app_context.read_sessions) as session:
        verification = await audit_service.verify(session, end)
        assert verification.valid, verification
        tasks = list(await session.scalars(select(Task)))
        assert len(tasks) == 240
        assert all(end - timedelta(days=30) <= t.created_at < end for t in tasks)
        by_task = {t.id: t for t in tasks}
        clocks = list(await session.scalars(select(SlaClock)))
        assert sorted((c.task_id, c.kind) for c in clocks) == sorted(
            (t.id, kind) for t in tasks for kind in ("RESOLVE", "START")
        )
        by_clock = {c.id: c for c in clocks}
        for sla_clock in clocks:
            task = by_task[sla_clock.task_id]
            assert sla_clock.started_at == task.created_at
            kind = "start" if sla_clock.kind == "START" else "resolve"
            assert getattr(task, f"{kind}_deadline") == sla_clock.deadline
            if sla_clock.calendar_name is None:  # 24x7: a shift keeps the plan exactly
                assert sla_clock.deadline == plan_of(sla_clock).deadline
            assert sla_clock.stopped_at is None or sla_clock.stopped_at <= end
        events = list(await session.scalars(select(SlaEvent)))
        assert all(
            e.clock_id is not None and by_clock[e.clock_id].task_id == e.task_id for e in events
        )
        assert all(e.triggered_at <= end for e in events)
        # Each task's audit rows name it, and its creation is audited at its creation.
        created = {
            row.entity_id: row.timestamp
            for row in await session.scalars(
                select(AuditLog).where(AuditLog.action == "TASK_CREATED")
            )
        }
        assert created == {t.id: t.created_at for t in tasks}
        comments = list(await session.scalars(select(Comment)))
        assert comments
        assert all(c.task_id in by_task for c in comments)
        sent = list(await session.scalars(select(Notification)))
        assert {n.notification_type for n in sent} >= {"task.completed", "sla.breach"}
        assert all(n.task_id in by_task and n.status == "SENT" for n in sent)
        assert len({n.dedup_key for n in sent}) == len(sent)
        assert all(str(n.source_event_id) in n.dedup_key for n in sent)
        breach_events = {e.id for e in events}
        assert all(n.sla_event_id in breach_events for n in sent if n.sla_event_id)
