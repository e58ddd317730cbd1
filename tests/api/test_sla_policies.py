"""SLA policies and business calendars through the API: CRUD, resolution at task creation,
recomputation on priority changes, calendars in the clocks, pause on BLOCKED, simulation,
YAML import/export — each change audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from opsflow.clock import SettableClock
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.sla import service as sla_service
from opsflow.sla.engine import SlaEngine
from opsflow.sla_config import service as sla_config_service
from tests.conftest import assert_error
from tests.factories import ADMIN_PASSWORD, login, make_user

# Friday 2026-01-30 16:30 in Paris (UTC+1 in winter) and the Monday after, 09:30.
FRIDAY_1630 = datetime(2026, 1, 30, 15, 30, tzinfo=UTC)
MONDAY_0930 = datetime(2026, 2, 2, 8, 30, tzinfo=UTC)

BUSINESS_HOURS = {
    "name": "paris-office",
    "timezone": "Europe/Paris",
    "hours": {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": [],
}

SEED_002 = """
sla_targets:
  ENTERPRISE:
    P0:
      response_minutes: 15
      resolution_minutes: 60
      escalation:
        LEVEL_1: 10
        LEVEL_2: 20
    P1:
      response_minutes: 60
      resolution_minutes: 240
  STANDARD:
    P2:
      response_minutes: 480
      resolution_minutes: 1440
alert_thresholds:
  warning: 15
  critical: 5
escalation_levels:
  0: "No escalation"
  1: "Team lead notified"
  2: "Manager notified"
"""


async def at(client: httpx.AsyncClient, clock: SettableClock, when: datetime) -> dict[str, str]:
    """Move the clock (days, at times) and log in again: tokens live at most a day."""
    clock.set(when)
    return await login(client, "admin", ADMIN_PASSWORD)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _calendar(client: httpx.AsyncClient, headers: dict[str, str], **extra: Any) -> Any:
    response = await client.post("/calendars", json={**BUSINESS_HOURS, **extra}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _policy(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> Any:
    body = {
        "name": "incident-critical",
        "task_type": "INCIDENT",
        "priority": "CRITICAL",
        "start_minutes": 60,
        "resolve_minutes": 240,
        **fields,
    }
    response = await client.post("/sla-policies", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _task(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> Any:
    body = {"title": "Checkout is down", "task_type": "INCIDENT", "priority": "CRITICAL", **fields}
    response = await client.post("/tasks", json=body, headers=headers)
    assert response.status_code == 201, response.text
    detail = await client.get(f"/tasks/{response.json()['id']}", headers=headers)
    assert detail.status_code == 200, detail.text
    return detail.json()


async def _audit(client: httpx.AsyncClient, headers: dict[str, str], entity_type: str) -> Any:
    response = await client.get(
        "/audit-logs", params={"entity_type": entity_type, "page_size": 100}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]


# --- the Done-when scenario -------------------------------------------------------------------


async def test_friday_1630_with_60_minutes_breaches_monday_0930_as_simulated(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    admin_headers = await at(client, clock, FRIDAY_1630 - timedelta(days=1))
    await _calendar(client, admin_headers)
    await _policy(client, admin_headers, calendar="paris-office")

    simulated = await client.post(
        "/sla-policies/simulate",
        json={"policy": "incident-critical", "start": iso(FRIDAY_1630)},
        headers=admin_headers,
    )
    assert simulated.status_code == 200, simulated.text
    start_clock = simulated.json()["clocks"][0]
    assert start_clock["kind"] == "START"
    breach = start_clock["thresholds"][-1]
    assert breach["name"] == "START_BREACH"
    assert instant(breach["at"]) == MONDAY_0930
    assert breach["local_time"] == "Mon 2026-02-02 09:30:00 Europe/Paris"
    # 75 % of 60 working minutes = 45: 30 on Friday, 15 on Monday.
    assert instant(start_clock["thresholds"][0]["at"]) == MONDAY_0930 - timedelta(minutes=15)

    admin_headers = await at(client, clock, FRIDAY_1630)
    task = await _task(client, admin_headers)
    assert task["sla_policy_name"] == "incident-critical"
    assert task["start_sla_source"] == "policy"
    assert instant(task["sla_status"]["start_deadline"]) == MONDAY_0930

    # Saturday noon: half the working target used, nothing fires, state compliant.
    admin_headers = await at(client, clock, datetime(2026, 1, 31, 11, 0, tzinfo=UTC))
    assert (await SlaEngine().run(app_context, batch=500)).counts["events"] == 0
    task = (await client.get(f"/tasks/{task['id']}", headers=admin_headers)).json()
    start_view = task["sla_status"]["clocks"][0]
    assert (start_view["state"], start_view["percent_elapsed"]) == ("compliant", 50.0)
    listed = await client.get("/tasks", params={"sla_state": "compliant"}, headers=admin_headers)
    assert [t["id"] for t in listed.json()["items"]] == [task["id"]]

    admin_headers = await at(client, clock, MONDAY_0930 - timedelta(seconds=1))
    await SlaEngine().run(app_context, batch=500)
    clock.set(MONDAY_0930)
    await SlaEngine().run(app_context, batch=500)
    events = (await client.get(f"/tasks/{task['id']}/sla-events", headers=admin_headers)).json()
    fired = {e["event_type"]: e for e in events["events"]}
    assert list(fired) == ["START_WARNING", "START_CRITICAL", "START_BREACH"]
    assert instant(fired["START_BREACH"]["due_at"]) == MONDAY_0930
    listed = await client.get("/tasks", params={"sla_state": "breached"}, headers=admin_headers)
    assert [t["id"] for t in listed.json()["items"]] == [task["id"]]
    has_breach = await client.get("/tasks", params={"has_breach": "true"}, headers=admin_headers)
    assert [t["id"] for t in has_breach.json()["items"]] == [task["id"]]


async def test_sla_detail_explains_time_outside_business_hours(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    admin_headers = await at(client, clock, FRIDAY_1630)
    await _calendar(client, admin_headers)
    await _policy(client, admin_headers, calendar="paris-office")
    task = await _task(client, admin_headers)
    admin_headers = await at(client, clock, datetime(2026, 2, 2, 8, 10, tzinfo=UTC))
    detail = (await client.get(f"/tasks/{task['id']}/sla", headers=admin_headers)).json()
    start = next(c for c in detail["clocks"] if c["kind"] == "START")
    assert start["calendar"] == "paris-office"
    explanation = start["explanation"]
    assert explanation["working_seconds"] == 40 * 60  # 30 min Friday + 10 min Monday
    total = (datetime(2026, 2, 2, 8, 10, tzinfo=UTC) - FRIDAY_1630).total_seconds()
    assert explanation["outside_hours_seconds"] == total - 40 * 60


# --- resolution and recomputation -------------------------------------------------------------


async def test_most_specific_policy_wins_and_given_targets_stay(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await _policy(client, admin_headers, name="all-critical", task_type="*", start_minutes=30)
    await _policy(
        client,
        admin_headers,
        name="enterprise-critical",
        task_type="*",
        customer_tier="ENTERPRISE",
        start_minutes=10,
        resolve_minutes=45,
    )
    enterprise = await _task(client, admin_headers, customer_tier="ENTERPRISE")
    assert (enterprise["start_sla_minutes"], enterprise["resolve_sla_minutes"]) == (10, 45)
    assert enterprise["sla_policy_name"] == "enterprise-critical"
    standard = await _task(client, admin_headers)
    assert (standard["start_sla_minutes"], standard["resolve_sla_minutes"]) == (30, 240)
    given = await _task(client, admin_headers, customer_tier="ENTERPRISE", resolve_sla_minutes=90)
    assert (given["start_sla_minutes"], given["resolve_sla_minutes"]) == (10, 90)
    assert (given["start_sla_source"], given["resolve_sla_source"]) == ("policy", "request")
    nothing = await _task(client, admin_headers, priority="LOW", task_type="TASK")
    assert nothing["sla_policy_name"] is None
    assert (nothing["start_sla_minutes"], nothing["resolve_sla_minutes"]) == (1440, 10080)
    assert nothing["start_sla_source"] == "default"


async def test_priority_change_recomputes_from_the_new_policy(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    await _calendar(client, admin_headers)
    await _policy(
        client, admin_headers, calendar="paris-office", thresholds=[50, 90], start_minutes=20
    )
    task = await _task(client, admin_headers, priority="HIGH")
    assert task["sla_policy_name"] is None
    assert task["start_sla_minutes"] == 240  # built-in default for HIGH
    response = await client.patch(
        f"/tasks/{task['id']}", json={"priority": "CRITICAL"}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["sla_policy_name"] == "incident-critical"
    assert (updated["start_sla_minutes"], updated["resolve_sla_minutes"]) == (20, 240)
    sla = (await client.get(f"/tasks/{task['id']}/sla", headers=admin_headers)).json()
    start = next(c for c in sla["clocks"] if c["kind"] == "START")
    assert start["calendar"] == "paris-office"
    assert [t["percent"] for t in start["thresholds"]] == [50.0, 90.0, 100.0]
    trail = await client.get(f"/tasks/{task['id']}", headers=admin_headers)
    changes = trail.json()["audit_trail"][-1]["changes"]
    assert changes["sla_policy_name"] == {"from": None, "to": "incident-critical"}


async def test_pause_on_blocked_moves_the_deadline_by_the_blocked_time(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    await _policy(client, admin_headers, pause_on_blocked=True)
    task = await _task(client, admin_headers)
    task_id = task["id"]
    deadline = instant(task["sla_status"]["resolve_deadline"])
    await client.patch(f"/tasks/{task_id}/start", json={}, headers=admin_headers)
    clock.advance(timedelta(minutes=10))
    blocked = await client.patch(
        f"/tasks/{task_id}/block", json={"reason": "waiting on vendor"}, headers=admin_headers
    )
    assert blocked.status_code == 200, blocked.text
    sla = (await client.get(f"/tasks/{task_id}/sla", headers=admin_headers)).json()
    resolve = next(c for c in sla["clocks"] if c["kind"] == "RESOLVE")
    assert resolve["status"] == "PAUSED"
    assert resolve["pauses"][-1]["reason"] == "blocked: waiting on vendor"
    clock.advance(timedelta(minutes=30))
    unblocked = await client.patch(f"/tasks/{task_id}/unblock", json={}, headers=admin_headers)
    assert unblocked.status_code == 200, unblocked.text
    assert instant(unblocked.json()["sla_status"]["resolve_deadline"]) == deadline + timedelta(
        minutes=30
    )


async def test_blocked_does_not_pause_without_the_policy_flag(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    task = await _task(client, admin_headers)
    await client.patch(f"/tasks/{task['id']}/start", json={}, headers=admin_headers)
    await client.patch(f"/tasks/{task['id']}/block", json={"reason": "x"}, headers=admin_headers)
    sla = (await client.get(f"/tasks/{task['id']}/sla", headers=admin_headers)).json()
    assert next(c for c in sla["clocks"] if c["kind"] == "RESOLVE")["status"] == "ACTIVE"


async def test_calendar_change_reschedules_open_clocks(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    admin_headers = await at(client, clock, FRIDAY_1630)
    calendar = await _calendar(client, admin_headers)
    await _policy(client, admin_headers, calendar="paris-office")
    task = await _task(client, admin_headers)
    response = await client.patch(
        f"/calendars/{calendar['id']}", json={"holidays": ["2026-02-02"]}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    detail = (await client.get(f"/tasks/{task['id']}", headers=admin_headers)).json()
    assert instant(detail["sla_status"]["start_deadline"]) == MONDAY_0930 + timedelta(days=1)
    audit = await _audit(client, admin_headers, "business_calendar")
    assert audit[0]["action"] == "BUSINESS_CALENDAR_UPDATED"
    assert audit[0]["changes"]["holidays"] == {"from": [], "to": ["2026-02-02"]}


# --- CRUD and validation ----------------------------------------------------------------------


async def test_policy_crud_is_audited(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = await _policy(client, admin_headers)
    assert created["calendar"] == "24x7"
    assert created["thresholds"] == [75.0, 95.0]
    policy_id = created["id"]
    listed = (await client.get("/sla-policies", headers=admin_headers)).json()
    assert [p["name"] for p in listed["items"]] == ["incident-critical"]
    patched = await client.patch(
        f"/sla-policies/{policy_id}", json={"start_minutes": 45}, headers=admin_headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["start_minutes"] == 45
    deleted = await client.delete(f"/sla-policies/{policy_id}", headers=admin_headers)
    assert deleted.status_code == 204
    assert_error(
        await client.get(f"/sla-policies/{policy_id}", headers=admin_headers), 404, "NOT_FOUND"
    )
    actions = [row["action"] for row in await _audit(client, admin_headers, "sla_policy")]
    assert sorted(actions) == [
        "SLA_POLICY_CREATED",
        "SLA_POLICY_DELETED",
        "SLA_POLICY_UPDATED",
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"start_minutes": 300, "resolve_minutes": 240}, "start_minutes"),
        ({"thresholds": [95, 75]}, "thresholds"),
        ({"calendar": "nowhere"}, "calendar"),
        ({"start_minutes": 0}, "start_minutes"),
        ({"priority": "URGENT"}, "priority"),
        ({"name": "bad name"}, "name"),
        ({"thresholds": [75, 100]}, "thresholds"),
        ({"escalation": [{"level": 0, "minutes": 5}]}, "escalation"),
        ({"unknown": 1}, "unknown"),
    ],
)
async def test_invalid_policies_are_refused_with_the_field(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    base = {"name": "p", "start_minutes": 60, "resolve_minutes": 240}
    response = await client.post("/sla-policies", json={**base, **body}, headers=admin_headers)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert any(field in str(d.get("field")) for d in error["details"]), error


async def test_two_active_policies_may_not_share_a_selector(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await _policy(client, admin_headers)
    response = await client.post(
        "/sla-policies",
        json={
            "name": "other",
            "task_type": "INCIDENT",
            "priority": "CRITICAL",
            "start_minutes": 5,
            "resolve_minutes": 10,
        },
        headers=admin_headers,
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    inactive = await client.post(
        "/sla-policies",
        json={
            "name": "other",
            "task_type": "INCIDENT",
            "priority": "CRITICAL",
            "start_minutes": 5,
            "resolve_minutes": 10,
            "is_active": False,
        },
        headers=admin_headers,
    )
    assert inactive.status_code == 201, inactive.text
    duplicate = await client.post(
        "/sla-policies",
        json={"name": "other", "start_minutes": 5, "resolve_minutes": 10},
        headers=admin_headers,
    )
    assert_error(duplicate, 409, "CONFLICT")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"hours": {"mon": ["17:00-09:00"]}}, "hours"),
        ({"hours": {"mon": ["09:00-12:00", "11:00-13:00"]}}, "hours"),
        ({"hours": {"funday": ["09:00-17:00"]}}, "hours"),
        ({"hours": {}}, "hours"),
        ({"name": "24x7"}, "name"),
        ({"holidays": ["2026-02-30"]}, "holidays"),
        ({"hours": {"mon": ["9am-5pm"]}}, "hours"),
    ],
)
async def test_invalid_calendars_are_refused_with_the_field(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = await client.post(
        "/calendars", json={**BUSINESS_HOURS, **body}, headers=admin_headers
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert any(field in str(d.get("field")) for d in error["details"]), error


async def test_a_calendar_in_use_cannot_be_deleted(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    calendar = await _calendar(client, admin_headers)
    policy = await _policy(client, admin_headers, calendar="paris-office")
    error = assert_error(
        await client.delete(f"/calendars/{calendar['id']}", headers=admin_headers), 409, "CONFLICT"
    )
    assert error["policies"] == ["incident-critical"]
    listed = (await client.get("/calendars", headers=admin_headers)).json()["items"]
    assert listed[0]["policies"] == ["incident-critical"]
    await client.delete(f"/sla-policies/{policy['id']}", headers=admin_headers)
    response = await client.delete(f"/calendars/{calendar['id']}", headers=admin_headers)
    assert response.status_code == 204


async def test_roles(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    manager = await make_user(client, admin_headers, "manager")
    lead = await make_user(client, admin_headers, "team_lead")
    developer = await make_user(client, admin_headers, "developer")
    created = await client.post("/calendars", json=BUSINESS_HOURS, headers=manager.headers)
    assert created.status_code == 201, created.text
    assert (await client.get("/calendars", headers=lead.headers)).status_code == 200
    assert_error(
        await client.post("/sla-policies", json={"name": "x"}, headers=lead.headers),
        403,
        "FORBIDDEN",
    )
    assert_error(await client.get("/sla-policies", headers=developer.headers), 403, "FORBIDDEN")


# --- YAML import / export -----------------------------------------------------------------------


async def test_seed_002_import_then_export_round_trips(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dry = await client.post(
        "/sla-policies/import",
        params={"dry_run": "true"},
        content=SEED_002,
        headers={**admin_headers, "Content-Type": "application/yaml"},
    )
    assert dry.status_code == 200, dry.text
    assert dry.json()["applied"] is False
    assert len(dry.json()["changes"]) == 4  # three policies + settings
    assert (await client.get("/sla-policies", headers=admin_headers)).json()["items"] == []

    response = await client.post(
        "/sla-policies/import",
        content=SEED_002,
        headers={**admin_headers, "Content-Type": "application/yaml"},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["applied"], result["policies"]) == (True, 3)
    policies = {
        p["name"]: p
        for p in (await client.get("/sla-policies", headers=admin_headers)).json()["items"]
    }
    assert policies["enterprise-p0"]["thresholds"] == [85.0, 95.0]
    assert policies["enterprise-p0"]["escalation"] == [
        {"level": 1, "minutes": 10},
        {"level": 2, "minutes": 20},
    ]
    task = await _task(client, admin_headers, customer_tier="ENTERPRISE")
    assert (task["start_sla_minutes"], task["resolve_sla_minutes"]) == (15, 60)

    exported = await client.get("/sla-policies/export", headers=admin_headers)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(exported.text) == yaml.safe_load(SEED_002)

    again = await client.post(
        "/sla-policies/import",
        content=exported.text,
        headers={**admin_headers, "Content-Type": "application/yaml"},
    )
    assert again.json()["changes"] == []
    audited = await _audit(client, admin_headers, "sla_policy")
    assert len(audited) == 3


async def test_replace_removes_what_the_file_does_not_have(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await _policy(client, admin_headers, name="manual")
    merged = await client.post("/sla-policies/import", content=SEED_002, headers=admin_headers)
    assert merged.json()["policies"] == 4
    replaced = await client.post(
        "/sla-policies/import",
        params={"mode": "replace"},
        content=SEED_002,
        headers=admin_headers,
    )
    assert replaced.status_code == 200, replaced.text
    removed = [c for c in replaced.json()["changes"] if c["change"] == "removed"]
    assert [c["name"] for c in removed] == ["manual"]


@pytest.mark.parametrize(
    "document",
    [
        "sla_targets: [",
        "sla_targets:\n  ENTERPRISE:\n    P0:\n      response_minutes: -5\n"
        "      resolution_minutes: 60\n",
        "just a string",
        "\x00",
        "",
    ],
)
async def test_invalid_yaml_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, admin_headers: dict[str, str], document: str
) -> None:
    response = await client.post("/sla-policies/import", content=document, headers=admin_headers)
    assert_error(response, 400, "VALIDATION_ERROR")
    assert (await client.get("/sla-policies", headers=admin_headers)).json()["items"] == []


async def test_non_utf8_import_is_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post("/sla-policies/import", content=b"\xff\xfe", headers=admin_headers)
    assert_error(response, 400, "VALIDATION_ERROR")


async def test_simulate_without_a_policy_uses_the_defaults(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    response = await client.post(
        "/sla-policies/simulate", json={"priority": "CRITICAL"}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["policy"], body["source"], body["calendar"]) == (None, "default", "24x7")
    start = body["clocks"][0]
    assert instant(start["deadline"]) == clock.now() + timedelta(minutes=60)
    unknown = await client.post(
        "/sla-policies/simulate", json={"policy": "nope"}, headers=admin_headers
    )
    assert_error(unknown, 404, "NOT_FOUND")


async def test_simulate_lists_the_steps_of_the_escalation_policies_that_would_match(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    for policy in (
        {
            "name": "critical-breach",
            "conditions": {"priority": ["CRITICAL"]},
            "trigger": "breach",
            "steps": [
                {"delay_minutes": 0, "targets": ["assignee"], "channels": ["email"]},
                {"delay_minutes": 5, "targets": ["team_lead"], "channels": ["slack"]},
            ],
        },
        {
            "name": "critical-warning",
            "conditions": {"priority": ["CRITICAL"], "tags": ["db"]},
            "trigger": "warning",
            "steps": [{"delay_minutes": 1, "targets": ["team"], "channels": ["email"]}],
        },
    ):
        created = await client.post("/escalation-policies", json=policy, headers=admin_headers)
        assert created.status_code == 201, created.text
    request = {"priority": "CRITICAL", "start_minutes": 20, "resolve_minutes": 120}
    start = clock.now()

    def steps(body: dict[str, Any]) -> list[tuple[str, str | None, int, datetime, list[str]]]:
        return [
            (s["policy"], s["sla_type"], s["level"], instant(s["at"]), s["targets"])
            for s in body["escalation_steps"]
        ]

    response = await client.post("/sla-policies/simulate", json=request, headers=admin_headers)
    assert response.status_code == 200, response.text
    minute = timedelta(minutes=1)
    assert steps(response.json()) == [
        ("critical-breach", "START", 1, start + 20 * minute, ["assignee"]),
        ("critical-breach", "START", 2, start + 25 * minute, ["team_lead"]),
        ("critical-breach", "RESOLVE", 1, start + 120 * minute, ["assignee"]),
        ("critical-breach", "RESOLVE", 2, start + 125 * minute, ["team_lead"]),
    ]
    tagged = await client.post(
        "/sla-policies/simulate", json={**request, "tags": ["db"]}, headers=admin_headers
    )
    assert steps(tagged.json())[:2] == [  # warnings at 75 % of each target, plus a minute
        ("critical-warning", "START", 1, start + 16 * minute, ["team"]),
        ("critical-breach", "START", 1, start + 20 * minute, ["assignee"]),
    ]
    low = await client.post(
        "/sla-policies/simulate", json={**request, "priority": "LOW"}, headers=admin_headers
    )
    assert steps(low.json()) == [  # no policy: the team lead 5 minutes after a START breach
        ("default: team lead after START breach", "START", 1, start + 25 * minute, ["team_lead"])
    ]
    unknown = await client.post(
        "/sla-policies/simulate", json={**request, "team": "nobody"}, headers=admin_headers
    )
    assert_error(unknown, 400, "VALIDATION_ERROR")


# --- hostile input ------------------------------------------------------------------------------

HOSTILE_BODIES: list[Any] = [
    {"name": "a\x00b", "start_minutes": 5, "resolve_minutes": 10},
    {"name": "x" * 10_000, "start_minutes": 5, "resolve_minutes": 10},
    {"name": "p", "start_minutes": "5", "resolve_minutes": 10},
    {"name": "p", "start_minutes": 5.5, "resolve_minutes": 10},
    {"name": "p", "start_minutes": 5, "resolve_minutes": 10, "thresholds": ["a", "b"]},
    {"name": "p", "start_minutes": 5, "resolve_minutes": 10, "calendar": "\x00"},
    {"name": "p", "start_minutes": 2**70, "resolve_minutes": 10},
    {"name": "c", "timezone": "UTC\x00", "hours": {"mon": ["09:00-17:00"]}},
    {"name": "c", "timezone": "UTC", "hours": {"mon": ["09:00-17:00\x00"]}},
    {"name": "c", "timezone": "UTC", "hours": {"mon": "09:00-17:00"}},
    {"name": "c", "timezone": "UTC", "hours": {"mon": ["25:00-26:00"]}},
    {"name": "c", "timezone": "UTC", "hours": {"mon": ["09:00-17:00"]}, "holidays": [1]},
    {"start": "2026-01-30T16:30:00"},  # naive instant
    {"start": "not a date"},
    {"pauses": [{"start": "2026-01-30T16:30:00Z"}]},
    {"priority": "URGENT"},
    {"calendar": "nowhere"},
    {"start_minutes": 10, "resolve_minutes": 5},
    {"thresholds": [90, 80]},
    [],
    "a string",
    None,
]


@pytest.mark.parametrize(
    "path",
    ["/sla-policies", "/calendars", "/sla-policies/simulate"],
)
@pytest.mark.parametrize("body", HOSTILE_BODIES)
async def test_hostile_bodies_are_4xx_and_write_nothing(
    client: httpx.AsyncClient, admin_headers: dict[str, str], path: str, body: Any
) -> None:
    response = await client.post(path, json=body, headers=admin_headers)
    if response.status_code in (200, 201):
        # A body valid for this endpoint (e.g. an empty-ish simulate request).
        assert path == "/sla-policies/simulate" or body is None, response.text
        return
    assert response.status_code in (400, 404, 409), response.text
    assert_error(response, response.status_code, response.json()["error"]["code"])
    for listing in ("/sla-policies", "/calendars"):
        assert (await client.get(listing, headers=admin_headers)).json()["items"] == []


@pytest.mark.parametrize(
    "path",
    [
        "/sla-policies/not-a-uuid",
        "/calendars/not-a-uuid",
        "/sla-policies/00000000-0000-4000-8000-000000000000",
        "/calendars/00000000-0000-4000-8000-000000000000",
    ],
)
async def test_unknown_or_malformed_ids(
    client: httpx.AsyncClient, admin_headers: dict[str, str], path: str
) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(method, path, json={}, headers=admin_headers)
        expected = (400, "VALIDATION_ERROR") if "not-a-uuid" in path else (404, "NOT_FOUND")
        assert_error(response, *expected)


async def test_malformed_json_and_patch_nulls(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/calendars",
        content=b'{"name": "x", ',
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    policy = await _policy(client, admin_headers)
    nulled = await client.patch(
        f"/sla-policies/{policy['id']}", json={"start_minutes": None}, headers=admin_headers
    )
    assert_error(nulled, 400, "VALIDATION_ERROR")
    calendar = await _calendar(client, admin_headers)
    nulled = await client.patch(
        f"/calendars/{calendar['id']}", json={"timezone": None}, headers=admin_headers
    )
    assert_error(nulled, 400, "VALIDATION_ERROR")


async def test_tasks_match_policies_exactly_as_the_configuration_stores_them(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_context: AppContext
) -> None:
    """The policies new tasks are matched against are the stored configuration, every field
    included (escalation levels too): one mapping from rows to policies serves both."""
    await _calendar(client, admin_headers)
    await _policy(
        client,
        admin_headers,
        calendar="paris-office",
        thresholds=[50, 80],
        pause_on_blocked=True,
        escalation=[{"level": 1, "minutes": 10}, {"level": 2, "minutes": 30}],
    )
    await _policy(client, admin_headers, name="high", priority="HIGH", is_active=False)
    async with unit_of_work(app_context.sessions) as session:
        matched = (await sla_service.load_catalog(session)).specs
        stored = (await sla_config_service.load(session)).config.policies
    assert sorted(matched, key=lambda spec: spec.name) == [p for p in stored if p.is_active]
    assert matched[0].escalation == ((1, 10), (2, 30))


EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "sla_config.yaml"


async def test_the_shipped_example_sla_config_imports_and_simulates(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    imported = await client.post(
        "/sla-policies/import", content=EXAMPLE.read_bytes(), headers=admin_headers
    )
    assert imported.status_code == 200, imported.text
    assert (imported.json()["applied"], imported.json()["policies"]) == (True, 17)
    listed = await client.get("/sla-policies", params={"page_size": 100}, headers=admin_headers)
    names = {p["name"] for p in listed.json()["items"]}
    assert {"enterprise-p0", "basic-p3", "task-low"} <= names
    simulated = await client.post(
        "/sla-policies/simulate", json={"policy": "enterprise-p0"}, headers=admin_headers
    )
    assert simulated.status_code == 200, simulated.text
    levels = [(s["name"], instant(s["at"])) for s in simulated.json()["escalation"]]
    assert levels[0] == ("LEVEL_1 (Team lead notified)", clock.now() + timedelta(minutes=10))
    exported = await client.get("/sla-policies/export", headers=admin_headers)
    assert yaml.safe_load(exported.text)["escalation_levels"][2] == "Manager notified"


async def test_simulating_a_named_policy_matches_escalation_policies_on_its_selectors(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    imported = await client.post(
        "/sla-policies/import", content=EXAMPLE.read_bytes(), headers=admin_headers
    )
    assert imported.status_code == 200, imported.text
    created = await client.post(
        "/escalation-policies",
        json={
            "name": "enterprise-outage",
            "conditions": {"priority": ["CRITICAL"], "customer_tier": ["ENTERPRISE"]},
            "trigger": "created",
            "steps": [{"delay_minutes": 2, "targets": ["manager"], "channels": ["sms"]}],
        },
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    simulated = await client.post(
        "/sla-policies/simulate", json={"policy": "enterprise-p0"}, headers=admin_headers
    )
    steps = simulated.json()["escalation_steps"]
    assert (steps[0]["policy"], steps[0]["trigger"], instant(steps[0]["at"])) == (
        "enterprise-outage",
        "created",
        clock.now() + timedelta(minutes=2),
    )
    other = await client.post(
        "/sla-policies/simulate",
        json={"policy": "enterprise-p0", "priority": "LOW"},  # what the request says wins
        headers=admin_headers,
    )
    assert "enterprise-outage" not in {s["policy"] for s in other.json()["escalation_steps"]}
