"""A task's timeline with the settable clock: every kind of entry (creation, changes,
assignment, ingested alert updates, comments, SLA events, an escalation fired, notifications
sent and given up, status changes) in one stream ordered by time, filtered by kind, paged
with a cursor, and filtered by what the reader may see."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from opsflow.clock import SettableClock
from opsflow.config import Settings
from opsflow.context import AppContext
from tests.conftest import T0, assert_error, delivery_settings
from tests.factories import advance, make_team, make_user
from tests.sinks import HttpSink, Reply, SmtpSink

Headers = dict[str, str]


@pytest.fixture
def settings(database_url: str, smtp: tuple[SmtpSink, int], slack: HttpSink) -> Settings:
    return delivery_settings(database_url, smtp, slack)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def stamp(minutes: float) -> str:
    return at(minutes).isoformat().replace("+00:00", "Z")


async def timeline(
    client: httpx.AsyncClient, task_id: str, headers: Headers, **params: Any
) -> list[dict[str, Any]]:
    """Every entry, read page by page."""
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = dict(params)
        if cursor:
            query["cursor"] = cursor
        response = await client.get(f"/tasks/{task_id}/timeline", params=query, headers=headers)
        assert response.status_code == 200, response.text
        entries += response.json()["items"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return entries


async def _incident_with_history(
    client: httpx.AsyncClient,
    admin: Headers,
    clock: SettableClock,
    ctx: AppContext,
    slack: HttpSink,
) -> dict[str, Any]:
    team = await make_team(client, admin)
    dev = await make_user(client, admin, "developer", team_id=team)
    lead = await make_user(client, admin, "team_lead", team_id=team)
    viewer = await make_user(client, admin, "viewer", team_id=team)
    policy = {
        "name": "page-on-breach",
        "trigger": "breach",
        "steps": [{"delay_minutes": 0, "targets": ["assignee"], "channels": ["slack"]}],
    }
    created = await client.post("/escalation-policies", json=policy, headers=admin)
    assert created.status_code == 201, created.text
    integration = await client.post(
        "/integrations", json={"name": "disk-alerts", "type": "generic"}, headers=admin
    )
    assert integration.status_code == 201, integration.text
    key = integration.json()["key"]
    alert: dict[str, Any] = {
        "event_action": "trigger",
        "dedup_key": "disk-db-1",
        "payload": {"summary": "Disk 91% full on db-1", "severity": "warning", "source": "db-1"},
    }

    clock.set(at(0))  # the alert opens the incident
    opened = await client.post(f"/integrations/{key}/events", json=alert)
    assert opened.status_code == 202, opened.text
    log = await client.get(f"/integrations/{integration.json()['id']}/events", headers=admin)
    assert log.status_code == 200, log.text
    task_id = log.json()["items"][0]["task_id"]
    clock.set(at(0.5))  # tighter targets: the response SLA breaches at 10:40
    tightened = await client.patch(
        f"/tasks/{task_id}",
        json={"start_sla_minutes": 10, "resolve_sla_minutes": 600, "team_id": team},
        headers=admin,
    )
    assert tightened.status_code == 200, tightened.text
    clock.set(at(1))
    assigned = await client.patch(
        f"/tasks/{task_id}/assign", json={"assigned_to": dev.id}, headers=admin
    )
    assert assigned.status_code == 200, assigned.text
    clock.set(at(2))  # the alert fires again, worse
    again = await client.post(
        f"/integrations/{key}/events",
        json={**alert, "payload": {**alert["payload"], "summary": "Disk 97% full on db-1"}},
    )
    assert again.status_code == 202, again.text
    clock.set(at(3))
    public = await client.post(
        f"/tasks/{task_id}/comments", json={"body": "Rotating the logs now"}, headers=dev.headers
    )
    assert public.status_code == 201, public.text
    clock.set(at(4))
    internal = await client.post(
        f"/tasks/{task_id}/comments",
        json={"body": "Vendor bug, do not tell the customer yet", "internal": True},
        headers=lead.headers,
    )
    assert internal.status_code == 201, internal.text
    # The warning (75%) e-mails the assignee; the breach at 10:40 fires the escalation, whose
    # Slack page fails every attempt and ends DEAD.
    slack.script = [Reply(500, b"boom")] * 3
    for minutes in (5, 8, 9.6, 10.5, 40, 80, 110):
        await advance(ctx, clock, at(minutes))
    clock.set(at(120))
    started = await client.patch(f"/tasks/{task_id}/start", headers=dev.headers)
    assert started.status_code == 200, started.text
    return {"task_id": task_id, "dev": dev, "lead": lead, "viewer": viewer}


async def test_every_kind_of_entry_in_one_stream_ordered_by_time(
    client: httpx.AsyncClient,
    admin_headers: Headers,
    clock: SettableClock,
    app_context: AppContext,
    slack: HttpSink,
) -> None:
    world = await _incident_with_history(client, admin_headers, clock, app_context, slack)
    task_id, dev = world["task_id"], world["dev"]
    entries = await timeline(client, task_id, admin_headers)
    times = [e["occurred_at"] for e in entries]
    assert times == sorted(times)
    assert len({e["id"] for e in entries}) == len(entries)
    assert {e["kind"] for e in entries} == {
        "created",
        "update",
        "assignment",
        "alert",
        "comment",
        "sla",
        "escalation",
        "notification",
        "status",
    }
    lines = [(e["occurred_at"], e["kind"], e["summary"]) for e in entries]

    def first(kind: str, text: str = "") -> tuple[str, str, str]:
        return next(line for line in lines if line[1] == kind and text in line[2])

    created = first("created")
    assert created[0] == stamp(0)
    assert created[2].startswith("integration:disk-alerts created the task")
    assert first("alert", "trigger")[2] == (
        "Alert trigger from disk-alerts: created (Disk 91% full on db-1)"
    )
    assert first("update")[0] == stamp(0.5)
    assert "start_sla_minutes" in first("update")[2]
    assert first("assignment") == (
        stamp(1),
        "assignment",
        f"admin assigned the task to {dev.username.replace('-', ' ').title()}",
    )
    second_alert = [line for line in lines if line[1] == "alert"][1]
    assert second_alert[0] == stamp(2)
    assert "Disk 97% full on db-1" in second_alert[2]
    comments = [line for line in lines if line[1] == "comment"]
    assert comments == [
        (stamp(3), "comment", f"{dev.username} commented: Rotating the logs now"),
        (
            stamp(4),
            "comment",
            f"{world['lead'].username} commented (internal): Vendor bug, do not tell the "
            "customer yet",
        ),
    ]
    sla = [line for line in lines if line[1] == "sla"]
    when = {s[2].split(" (")[0]: s[0] for s in sla}
    assert set(when) == {
        "SLA start warning",
        "SLA start critical",
        "SLA start breach",
        "SLA escalation to level 1",  # the SLA policy's escalation level at the breach
    }
    assert when["SLA start warning"] == stamp(8)  # the engine passes: 10:38, 10:39:36, 10:40:30
    assert when["SLA start warning"] < when["SLA start critical"] < when["SLA start breach"]
    escalation = first("escalation")
    assert escalation[0] == first("sla", "breach")[0]
    assert escalation[2] == f"Escalation level 1 fired (page-on-breach) to {dev.username}"
    notes = [line for line in lines if line[1] == "notification"]
    assert any(
        n[2] == f"Email sla.warning to {dev.username}: sent" and n[0] < escalation[0] for n in notes
    )
    dead = [n for n in notes if "given up" in n[2]]
    assert [n[2] for n in dead] == [f"Slack escalation.fired to {dev.username}: given up (dead)"]
    assert dead[0][0] > escalation[0]
    assert lines[-1] == (
        stamp(120),
        "status",
        f"{dev.username} started the task (ASSIGNED → IN_PROGRESS)",
    )

    # Paging gives the same stream, whatever the page size.
    for size in (1, 4, 7):
        assert await timeline(client, task_id, admin_headers, limit=size) == entries

    # Filtered by kind (repeated or comma-separated).
    only = await timeline(client, task_id, admin_headers, kind=["comment,alert"])
    assert [e["kind"] for e in only] == ["alert", "alert", "comment", "comment"]
    sla_only = await timeline(client, task_id, admin_headers, kind="sla", limit=2)
    assert [e["summary"] for e in sla_only] == [e["summary"] for e in entries if e["kind"] == "sla"]
    # SLA pauses are SLA entries too.
    clock.set(at(121))
    paused = await client.patch(
        f"/tasks/{task_id}/sla/pause", json={"reason": "waiting on vendor"}, headers=admin_headers
    )
    assert paused.status_code == 200, paused.text
    latest = (await timeline(client, task_id, admin_headers, kind="sla"))[-1]
    assert latest["summary"] == "admin paused the SLA clocks of the task: waiting on vendor"


async def test_the_timeline_shows_each_reader_what_they_may_see(
    client: httpx.AsyncClient,
    admin_headers: Headers,
    clock: SettableClock,
    app_context: AppContext,
    slack: HttpSink,
) -> None:
    world = await _incident_with_history(client, admin_headers, clock, app_context, slack)
    task_id = world["task_id"]
    everything = await timeline(client, task_id, admin_headers)
    viewer = await timeline(client, task_id, world["viewer"].headers)
    hidden = [e for e in everything if e not in viewer]
    # A viewer sees no internal comment and no notification (not theirs to read).
    assert {e["kind"] for e in hidden} == {"comment", "notification"}
    assert [e["summary"] for e in hidden if e["kind"] == "comment"] == [
        f"{world['lead'].username} commented (internal): Vendor bug, do not tell the customer yet"
    ]
    assert all("Vendor bug" not in e["summary"] for e in viewer)
    # The team lead reads internal comments but no notifications; the assignee (a developer)
    # reads the notifications addressed to them.
    lead = await timeline(client, task_id, world["lead"].headers)
    assert [e for e in everything if e["kind"] != "notification"] == lead
    dev = await timeline(client, task_id, world["dev"].headers)
    assert dev == everything  # every notification of this task went to the assignee


async def test_bad_timeline_queries_answer_400(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    created = await client.post("/tasks", json={"title": "quiet"}, headers=admin_headers)
    task_id = created.json()["id"]
    for params in (
        {"kind": "gossip"},
        {"cursor": "%%%"},
        {"cursor": "WyJ4Il0"},  # ["x"]
        {"cursor": "WyJub3QgYSB0aW1lIiwidGFzayIsIjEiXQ"},  # ["not a time","task","1"]
        {"limit": 0},
        {"limit": 1000},
    ):
        response = await client.get(
            f"/tasks/{task_id}/timeline", params=params, headers=admin_headers
        )
        assert_error(response, 400, "VALIDATION_ERROR")
    assert_error(
        await client.get("/tasks/nope/timeline", headers=admin_headers), 400, "VALIDATION_ERROR"
    )
