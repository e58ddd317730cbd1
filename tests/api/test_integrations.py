"""Alert integrations over the API: CRUD, the generic (PagerDuty-style), Alertmanager,
Grafana and Elastic endpoints with recorded payloads, the incident lifecycle and bad input."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import random
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from opsflow.app import create_app
from opsflow.clock import SettableClock
from tests.conftest import assert_error, make_settings
from tests.factories import ADMIN_PASSWORD, login, make_user

PAYLOADS = Path(__file__).parent.parent / "data" / "alerts"
Headers = dict[str, str]


def recorded(name: str) -> dict[str, Any]:
    return dict(json.loads((PAYLOADS / name).read_text()))


async def make_integration(
    client: httpx.AsyncClient, admin: Headers, kind: str = "generic", **fields: Any
) -> dict[str, Any]:
    body = {"name": f"{kind}-{len(fields)}-{id(fields)}", "type": kind, **fields}
    response = await client.post("/integrations", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def events(client: httpx.AsyncClient, admin: Headers, integration_id: str) -> list[Any]:
    response = await client.get(f"/integrations/{integration_id}/events", headers=admin)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def task(client: httpx.AsyncClient, admin: Headers, task_id: str) -> dict[str, Any]:
    response = await client.get(f"/tasks/{task_id}", headers=admin)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def send(
    client: httpx.AsyncClient, key: str, body: dict[str, Any], path: str = "events"
) -> httpx.Response:
    response = await client.post(f"/integrations/{key}/{path}", json=body)
    # The event log lists newest first: keep each event at its own instant.
    clock: SettableClock = client._transport.app.state.context.clock  # type: ignore[attr-defined]
    clock.advance(seconds=1)
    return response


def trigger(key: str | None = None, severity: str = "warning", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_action": "trigger",
        "payload": {
            "summary": "Disk 91% full on db-1",
            "severity": severity,
            "source": "db-1",
            "component": "postgres",
            "group": "storage",
            "class": "disk",
            "custom_details": {"free_gb": 9},
            "timestamp": "2026-01-27T10:29:00Z",
        },
        "links": [{"href": "https://grafana.example.com/d/disk", "text": "Dashboard"}],
        **extra,
    }
    if key is not None:
        body["dedup_key"] = key
    return body


# --- CRUD ---------------------------------------------------------------------------------


async def test_crud_shows_the_key_once_and_rotation_replaces_it(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    created = await make_integration(client, admin_headers, severity_map={"warning": "HIGH"})
    key = created["key"]
    assert created["urls"]["events"] == f"/integrations/{key}/events"
    assert created["severity_map"]["warning"] == "HIGH"
    assert created["severity_map"]["critical"] == "CRITICAL"
    assert (created["flap_threshold"], created["flap_window_minutes"]) == (4, 30)
    read = (await client.get(f"/integrations/{created['id']}", headers=admin_headers)).json()
    assert "key" not in read
    assert key not in json.dumps(read)
    listed = (await client.get("/integrations", headers=admin_headers)).json()
    assert [i["id"] for i in listed["items"]] == [created["id"]]

    rotated = await client.post(f"/integrations/{created['id']}/rotate-key", headers=admin_headers)
    assert rotated.status_code == 200, rotated.text
    new_key = rotated.json()["key"]
    assert new_key != key
    assert_error(await send(client, key, trigger("a")), 404, "NOT_FOUND")
    assert (await send(client, new_key, trigger("a"))).status_code == 202

    patched = await client.patch(
        f"/integrations/{created['id']}", json={"enabled": False}, headers=admin_headers
    )
    assert patched.status_code == 200, patched.text
    assert_error(await send(client, new_key, trigger("a")), 404, "NOT_FOUND")
    deleted = await client.delete(f"/integrations/{created['id']}", headers=admin_headers)
    assert deleted.status_code == 204


async def test_create_validation_lists_every_problem(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    response = await client.post(
        "/integrations",
        json={"name": "x", "type": "nagios", "severity_map": {"warning": "URGENT"}},
        headers=admin_headers,
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    fields = {d["field"] for d in error["details"]}
    assert "type" in fields
    assert any(f.startswith("severity_map") for f in fields)


# --- generic endpoint ---------------------------------------------------------------------


async def test_generic_lifecycle(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    integration = await make_integration(client, admin_headers)
    key = integration["key"]

    first = await send(client, key, trigger())
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["status"] == "success"
    assert body["message"] == "Event processed"
    dedup = body["dedup_key"]
    assert dedup
    log = await events(client, admin_headers, integration["id"])
    assert [(e["action"], e["outcome"], e["dedup_key"]) for e in log] == [
        ("trigger", "created", dedup)
    ]
    incident_id = log[0]["task_id"]
    incident = await task(client, admin_headers, incident_id)
    assert incident["task_type"] == "INCIDENT"
    assert incident["priority"] == "MEDIUM"
    assert incident["source"] == f"integration:{integration['id']}"
    assert incident["metadata"]["alert"]["count"] == 1

    clock.advance(minutes=1)
    again = await send(client, key, trigger(dedup))
    assert again.json()["dedup_key"] == dedup
    same = await task(client, admin_headers, incident_id)
    assert same["metadata"]["alert"]["count"] == 2
    assert same["priority"] == "MEDIUM"
    assert len(same["audit_trail"]) == len(incident["audit_trail"])  # a re-send is no change

    worse = await send(client, key, trigger(dedup, severity="critical"))
    assert worse.status_code == 202
    raised = await task(client, admin_headers, incident_id)
    assert raised["priority"] == "CRITICAL"
    milder = await send(client, key, trigger(dedup, severity="info"))
    assert milder.status_code == 202
    assert (await task(client, admin_headers, incident_id))["priority"] == "CRITICAL"

    ack = await send(client, key, {"event_action": "acknowledge", "dedup_key": dedup})
    assert ack.status_code == 202
    assert (await task(client, admin_headers, incident_id))["acknowledged_at"] is not None

    resolved = await send(client, key, {"event_action": "resolve", "dedup_key": dedup})
    assert resolved.status_code == 202
    assert (await task(client, admin_headers, incident_id))["status"] == "COMPLETED"

    clock.advance(minutes=5)
    reopened = await send(client, key, trigger(dedup))
    assert reopened.status_code == 202
    log = await events(client, admin_headers, integration["id"])
    assert log[0]["outcome"] == "created"
    new_id = log[0]["task_id"]
    assert new_id != incident_id
    new = await task(client, admin_headers, new_id)
    assert new["metadata"]["alert"]["previous_incident"] == incident_id
    assert new["status"] != "COMPLETED"
    outcomes = [e["outcome"] for e in reversed(log)]
    assert outcomes == [
        "created",
        "updated",
        "escalated",
        "updated",
        "acknowledged",
        "resolved",
        "created",
    ]


async def test_resolve_without_auto_resolve_is_recorded(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    integration = await make_integration(client, admin_headers, auto_resolve=False)
    key = integration["key"]
    await send(client, key, trigger("k1"))
    await send(client, key, {"event_action": "resolve", "dedup_key": "k1"})
    log = await events(client, admin_headers, integration["id"])
    assert log[0]["outcome"] == "recorded"
    incident = await task(client, admin_headers, log[0]["task_id"])
    assert incident["status"] != "COMPLETED"
    assert incident["metadata"]["alert"]["state"] == "resolved"


async def test_reopening_an_old_incident_leaves_the_alert_to_the_open_one(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    integration = await make_integration(client, admin_headers)
    key = integration["key"]
    await send(client, key, trigger("db-disk"))
    await send(client, key, {"event_action": "resolve", "dedup_key": "db-disk"})
    clock.advance(minutes=10)
    await send(client, key, trigger("db-disk"))
    log = await events(client, admin_headers, integration["id"])
    old_id, new_id = log[-1]["task_id"], log[0]["task_id"]
    assert old_id != new_id

    # The on-call engineer reopens the old incident while the new one is open.
    reopened = await client.patch(
        f"/tasks/{old_id}/reopen", json={"reason": "same root cause"}, headers=admin_headers
    )
    assert reopened.status_code == 200, reopened.text
    old = await task(client, admin_headers, old_id)
    assert old["status"] != "COMPLETED"
    assert old["metadata"]["alert_released"] == {"dedup_key": "db-disk", "open_incident": new_id}

    # The alert's events keep applying to the open incident it belongs to.
    again = await send(client, key, trigger("db-disk", severity="critical"))
    assert again.status_code == 202
    log = await events(client, admin_headers, integration["id"])
    assert (log[0]["outcome"], log[0]["task_id"]) == ("escalated", new_id)
    assert (await task(client, admin_headers, new_id))["priority"] == "CRITICAL"
    assert (await task(client, admin_headers, old_id))["metadata"]["alert"]["count"] == 1
    await send(client, key, {"event_action": "resolve", "dedup_key": "db-disk"})
    assert (await task(client, admin_headers, new_id))["status"] == "COMPLETED"
    assert (await task(client, admin_headers, old_id))["status"] != "COMPLETED"


async def test_events_of_every_kind_at_once_each_apply(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    """Concurrent requests share a group commit: escalations, acknowledgements, resolutions,
    re-sends and new keys, each applied as if alone."""
    integration = await make_integration(client, admin_headers)
    key = integration["key"]
    for name in ("esc", "ack", "res", "same"):
        assert (await send(client, key, trigger(name))).status_code == 202
    bodies = [
        trigger("esc", severity="critical"),
        {"event_action": "acknowledge", "dedup_key": "ack"},
        {"event_action": "resolve", "dedup_key": "res"},
        trigger("same"),
        trigger("fresh", severity="error"),
        {"event_action": "resolve", "dedup_key": "never-seen"},
    ]
    answers = await asyncio.gather(
        *(client.post(f"/integrations/{key}/events", json=body) for body in bodies)
    )
    assert [a.status_code for a in answers] == [202] * len(bodies)
    log = await events(client, admin_headers, integration["id"])
    latest = {(e["dedup_key"], e["action"]): e for e in reversed(log)}
    assert latest[("esc", "trigger")]["outcome"] == "escalated"
    assert latest[("ack", "acknowledge")]["outcome"] == "acknowledged"
    assert latest[("res", "resolve")]["outcome"] == "resolved"
    assert latest[("same", "trigger")]["outcome"] == "updated"
    assert latest[("fresh", "trigger")]["outcome"] == "created"
    assert latest[("never-seen", "resolve")]["outcome"] == "ignored"
    esc = await task(client, admin_headers, latest[("esc", "trigger")]["task_id"])
    assert (esc["priority"], esc["version"]) == ("CRITICAL", 2)
    ack = await task(client, admin_headers, latest[("ack", "acknowledge")]["task_id"])
    assert ack["acknowledged_at"] is not None
    res = await task(client, admin_headers, latest[("res", "resolve")]["task_id"])
    assert res["status"] == "COMPLETED"
    same = await task(client, admin_headers, latest[("same", "trigger")]["task_id"])
    assert same["metadata"]["alert"]["count"] == 2
    verify = await client.get("/audit-logs/verify", headers=admin_headers)
    assert verify.json()["valid"] is True, verify.text


async def test_flapping_holds_new_incidents_until_it_settles(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    integration = await make_integration(
        client, admin_headers, flap_threshold=3, flap_window_minutes=30
    )
    key = integration["key"]
    resolve = {"event_action": "resolve", "dedup_key": "flappy"}
    await send(client, key, trigger("flappy"))  # flip 1
    clock.advance(minutes=1)
    await send(client, key, resolve)  # flip 2: completes
    clock.advance(minutes=1)
    await send(client, key, trigger("flappy"))  # flip 3: a new, linked incident
    clock.advance(minutes=1)
    await send(client, key, resolve)  # flip 4 > 3: flapping, resolution held
    log = await events(client, admin_headers, integration["id"])
    assert [e["outcome"] for e in reversed(log)] == ["created", "resolved", "created", "held"]
    held = await task(client, admin_headers, log[0]["task_id"])
    assert "flapping" in held["tags"]
    assert held["status"] != "COMPLETED"
    assert held["metadata"]["alert"]["flapping"] is True

    clock.advance(minutes=1)
    await send(client, key, trigger("flappy"))  # the same incident, no new page
    log = await events(client, admin_headers, integration["id"])
    assert log[0]["outcome"] == "updated"
    assert log[0]["task_id"] == held["id"]

    clock.advance(minutes=40)  # the flips age out of the window: settled
    await send(client, key, resolve)
    log = await events(client, admin_headers, integration["id"])
    assert log[0]["outcome"] == "resolved"
    settled = await task(client, admin_headers, held["id"])
    assert settled["status"] == "COMPLETED"
    assert "flapping" not in settled["tags"]


async def test_generic_invalid_event_lists_every_problem_and_writes_nothing(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    integration = await make_integration(client, admin_headers)
    key = integration["key"]
    bad = {"event_action": "explode", "payload": {"severity": "mild", "timestamp": "yesterday"}}
    error = assert_error(await send(client, key, bad), 400, "VALIDATION_ERROR")
    fields = {d["field"] for d in error["details"]}
    assert {"event_action", "payload.summary", "payload.severity", "payload.source"} <= fields
    assert "payload.timestamp" in fields
    missing_key = await send(client, key, {"event_action": "resolve"})
    assert {d["field"] for d in assert_error(missing_key, 400, "VALIDATION_ERROR")["details"]} == {
        "dedup_key"
    }
    assert await events(client, admin_headers, integration["id"]) == []


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[1, 2]",
        b'{"event_action": "trigger", "payload": {"summary": "a\\u0000b", "severity": "info",'
        b' "source": "x"}}',
        b"\xff\xfe",
        b'{"event_action": "trigger", "payload": {"summary": "s", "severity": "info",'
        b' "source": "x", "custom_details": {"ratio": NaN}}}',
        b'{"event_action": "trigger", "x": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1000 + b"}",
        b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"event_action": "trigger", "payload": {"summary": "s", "severity": "info",'
        b' "source": "x", "custom_details": {"big": 1e400}}}',
        b'{"event_action": "trigger", "payload": {"summary": "\\ud800", "severity": "info",'
        b' "source": "x"}}',
    ],
    ids=[
        "malformed",
        "not-an-object",
        "nul-byte",
        "not-utf8",
        "nan",
        "deep",
        "very-deep",
        "infinite-number",
        "lone-surrogate",
    ],
)
async def test_bad_bodies_are_400_and_write_nothing(
    client: httpx.AsyncClient, admin_headers: Headers, content: bytes
) -> None:
    integration = await make_integration(client, admin_headers)
    for path in ("events", "alertmanager", "grafana", "elastic"):
        response = await client.post(
            f"/integrations/{integration['key']}/{path}",
            content=content,
            headers={"Content-Type": "application/json"},
        )
        assert_error(response, 400, "VALIDATION_ERROR")
    assert await events(client, admin_headers, integration["id"]) == []
    listed = await client.get("/tasks", params={"task_type": "INCIDENT"}, headers=admin_headers)
    assert listed.json()["pagination"]["total_items"] == 0


async def test_large_alertmanager_notifications_are_taken(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    """Over the 1 MiB default: Alertmanager would drop a notification answered 413."""
    integration = await make_integration(client, admin_headers, "alertmanager")
    body = recorded("alertmanager.json")
    body["alerts"][0]["annotations"]["description"] = "d" * (1024 * 1024 + 10)
    response = await send(client, integration["key"], body, "alertmanager")
    assert response.status_code == 202, response.text[:300]
    results = response.json()["results"]
    assert [r["outcome"] for r in results] == ["created", "created"]
    incident = await task(client, admin_headers, results[0]["task_id"])
    kept = incident["metadata"]["alert"]["payload"]
    assert kept["truncated"] is True
    assert kept["size_bytes"] > 1024 * 1024


async def test_an_oversized_alert_still_opens_its_incident(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    """Summary, payload and links together past what a task's metadata holds."""
    integration = await make_integration(client, admin_headers)
    body = trigger("big")
    body["payload"]["summary"] = "€" * 1000
    body["payload"]["custom_details"] = {"text": "a" * 8000}
    body["links"] = [{"href": "https://example.com/" + "€" * 990, "text": "t"}] * 5
    response = await send(client, integration["key"], body)
    assert response.status_code == 202, response.text
    log = await events(client, admin_headers, integration["id"])
    assert [e["outcome"] for e in log] == ["created"]
    incident = await task(client, admin_headers, log[0]["task_id"])
    assert incident["metadata"]["alert"]["payload"] == {"truncated": True}


async def test_unknown_key_is_404_in_the_envelope(client: httpx.AsyncClient) -> None:
    for path in ("events", "alertmanager", "grafana", "elastic"):
        response = await send(client, "no-such-key", trigger("x"), path)
        assert_error(response, 404, "NOT_FOUND")


async def test_inbound_endpoints_take_no_bearer_token(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    integration = await make_integration(client, admin_headers)
    viewer = await make_user(client, admin_headers, "viewer")
    response = await client.post(
        f"/integrations/{integration['key']}/events", json=trigger("t"), headers=viewer.headers
    )
    assert response.status_code == 202  # the key authenticates; a token changes nothing


# --- Alertmanager, Grafana, Elastic -------------------------------------------------------


async def test_alertmanager_one_incident_per_fingerprint(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    integration = await make_integration(client, admin_headers, "alertmanager")
    key = integration["key"]
    body = recorded("alertmanager.json")
    first = await send(client, key, body, "alertmanager")
    assert first.status_code == 202, first.text
    results = first.json()["results"]
    assert [r["outcome"] for r in results] == ["created", "created"]
    a, b = (r["task_id"] for r in results)
    assert a != b
    assert (await task(client, admin_headers, a))["title"] == "High 5xx rate on api-1"

    clock.advance(minutes=5)
    resent = await send(client, key, body, "alertmanager")
    assert [r["outcome"] for r in resent.json()["results"]] == ["updated", "updated"]
    assert (await task(client, admin_headers, a))["metadata"]["alert"]["count"] == 2

    resolved = copy.deepcopy(body)
    resolved["alerts"][0]["status"] = "resolved"
    resolved["alerts"][0]["endsAt"] = "2026-01-27T10:40:00Z"
    done = await send(client, key, resolved, "alertmanager")
    assert [r["outcome"] for r in done.json()["results"]] == ["resolved", "updated"]
    assert (await task(client, admin_headers, a))["status"] == "COMPLETED"
    assert (await task(client, admin_headers, b))["status"] != "COMPLETED"

    # A late re-send of the old firing alert does not reopen anything.
    stale = await send(client, key, body, "alertmanager")
    assert [r["outcome"] for r in stale.json()["results"]] == ["stale", "updated"]
    fired_again = copy.deepcopy(body)
    fired_again["alerts"][0]["startsAt"] = "2026-01-27T10:45:00Z"
    again = await send(client, key, fired_again, "alertmanager")
    outcome = again.json()["results"][0]
    assert outcome["outcome"] == "created"
    assert outcome["task_id"] not in (a, b)


async def test_alertmanager_one_incident_per_group_when_asked(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    integration = await make_integration(
        client, admin_headers, "alertmanager", group_incidents=True
    )
    response = await send(client, integration["key"], recorded("alertmanager.json"), "alertmanager")
    assert [r["outcome"] for r in response.json()["results"]] == ["created"]
    assert response.json()["results"][0]["dedup_key"] == '{}:{alertname="HighErrorRate"}'


def _grafana_signature(secret: str, raw: bytes, timestamp: str | None = None) -> str:
    message = f"{timestamp}:".encode() + raw if timestamp else raw
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


async def test_grafana_signed_payload(client: httpx.AsyncClient, admin_headers: Headers) -> None:
    secret = "grafana-hmac-secret"
    integration = await make_integration(client, admin_headers, "grafana", signature_secret=secret)
    assert integration["has_signature_secret"] is True
    assert secret not in json.dumps(integration)
    url = f"/integrations/{integration['key']}/grafana"
    raw = (PAYLOADS / "grafana.json").read_bytes()  # the exact bytes are signed
    # Known answers (`openssl dgst -sha256 -hmac grafana-hmac-secret`), as Grafana's sender
    # computes them: lowercase hex of HMAC-SHA256 over the body, or over "timestamp:body".
    assert _grafana_signature(secret, raw) == (
        "d7435d9bbd09c2264583028f04d0556f272d5efe7d87ce68bda481a089946f38"
    )
    assert _grafana_signature(secret, raw, "1769509800") == (
        "a53e11bb7ce699546a80412567f20112034880b54aa60ef86c2edecb5af8a357"
    )
    headers = {"Content-Type": "application/json"}

    unsigned = await client.post(url, content=raw, headers=headers)
    assert_error(unsigned, 401, "INVALID_SIGNATURE")
    wrong = await client.post(
        url,
        content=raw,
        headers={**headers, "X-Grafana-Alerting-Signature": _grafana_signature("other", raw)},
    )
    assert_error(wrong, 401, "INVALID_SIGNATURE")
    assert await events(client, admin_headers, integration["id"]) == []

    signed = await client.post(
        url,
        content=raw,
        headers={**headers, "X-Grafana-Alerting-Signature": _grafana_signature(secret, raw)},
    )
    assert signed.status_code == 202, signed.text
    results = signed.json()["results"]
    assert [r["dedup_key"] for r in results] == ["c6eadffa33fcdf37", "bc97ff14869b13e3"]
    memory = await task(client, admin_headers, results[0]["task_id"])
    assert memory["title"] == "This alert was triggered for zone us-1"
    assert memory["priority"] == "CRITICAL"

    stamp = "1769509800"
    with_time = await client.post(
        url,
        content=raw,
        headers={
            **headers,
            "X-Grafana-Alerting-Signature": _grafana_signature(secret, raw, stamp),
            "X-Grafana-Alerting-Signature-Timestamp": stamp,
        },
    )
    assert [r["outcome"] for r in with_time.json()["results"]] == ["updated", "updated"]
    # With the header name left empty in the contact point, Grafana signs in
    # X-Grafana-Alert-Signature; a signature over the body alone is refused when a timestamp
    # came with it.
    default_header = await client.post(
        url,
        content=raw,
        headers={**headers, "X-Grafana-Alert-Signature": _grafana_signature(secret, raw)},
    )
    assert default_header.status_code == 202, default_header.text
    unstamped = await client.post(
        url,
        content=raw,
        headers={
            **headers,
            "X-Grafana-Alerting-Signature": _grafana_signature(secret, raw),
            "X-Grafana-Alerting-Timestamp": stamp,
        },
    )
    assert_error(unstamped, 401, "INVALID_SIGNATURE")


async def test_elastic_kibana_and_watcher_defaults(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    integration = await make_integration(client, admin_headers, "elastic")
    key = integration["key"]
    kibana = recorded("kibana.json")
    fired = await send(client, key, kibana, "elastic")
    assert fired.status_code == 202, fired.text
    result = fired.json()["results"][0]
    assert result["dedup_key"] == "6a8f5e10-9c1e-11ee-8c90-0242ac120002:query matched"
    incident = await task(client, admin_headers, result["task_id"])
    assert incident["title"].startswith("Document count is 42")
    assert incident["priority"] == "CRITICAL"
    recovered = copy.deepcopy(kibana)
    recovered["alert"]["actionGroup"] = "recovered"
    done = await send(client, key, recovered, "elastic")
    assert done.json()["results"][0]["outcome"] == "resolved"

    watcher = await send(client, key, recorded("watcher.json"), "elastic")
    result = watcher.json()["results"][0]
    assert result["dedup_key"] == "log_errors"
    assert result["outcome"] == "created"
    title = (await task(client, admin_headers, result["task_id"]))["title"]
    assert title == "Errors in the application log"


async def test_elastic_mapping_by_json_pointers(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    integration = await make_integration(
        client,
        admin_headers,
        "elastic",
        mapping={
            "dedup_key": "/watch_id",
            "summary": "/payload/hits/total",
            "severity": "/vars/level",
            "action": "/vars/state",
        },
    )
    body = recorded("watcher.json")
    body["vars"] = {"level": "info", "state": "firing"}
    response = await send(client, integration["key"], body, "elastic")
    result = response.json()["results"][0]
    incident = await task(client, admin_headers, result["task_id"])
    assert (incident["title"], incident["priority"]) == ("7", "LOW")
    body["vars"]["state"] = "ok"
    response = await send(client, integration["key"], body, "elastic")
    assert response.json()["results"][0]["outcome"] == "resolved"
    unmapped = await send(client, integration["key"], {"hello": "world"}, "elastic")
    assert_error(unmapped, 400, "VALIDATION_ERROR")


# --- retention and availability -----------------------------------------------------------


async def test_event_log_is_pruned_after_the_retention(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    integration = await make_integration(client, admin_headers)
    await send(client, integration["key"], trigger("old"))
    clock.advance(days=13)
    await send(client, integration["key"], trigger("recent"))
    admin = await login(client, "admin", ADMIN_PASSWORD)  # tokens do not live for days
    assert len(await events(client, admin, integration["id"])) == 2
    clock.advance(days=2)  # the first event is now 15 days old: past the 14 days kept
    await send(client, integration["key"], trigger("new"))
    admin = await login(client, "admin", ADMIN_PASSWORD)
    kept = [e["dedup_key"] for e in await events(client, admin, integration["id"])]
    assert kept == ["new", "recent"]


async def test_database_unavailable_answers_503(tmp_path: Path) -> None:
    settings = make_settings("postgresql+asyncpg://opsflow@127.0.0.1:1/opsflow")
    app = create_app(settings, clock=SettableClock())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver/api/v1") as c:
        for path in ("events", "alertmanager"):
            response = await c.post(f"/integrations/some-key/{path}", json=trigger("x"))
            error = assert_error(response, 503, "SERVICE_UNAVAILABLE")
            assert error["message"]
            assert response.headers["Retry-After"]
    await app.state.context.close()


async def test_retention_setting_is_configurable() -> None:
    settings = make_settings("sqlite+aiosqlite:///:memory:")
    assert settings.integration_event_retention_days == 14
    custom = make_settings("sqlite+aiosqlite:///:memory:", integration_event_retention_days=3)
    assert custom.integration_event_retention_days == 3
    assert timedelta(days=custom.integration_event_retention_days) == timedelta(days=3)


async def test_concurrent_triggers_of_one_key_open_one_incident(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    integration = await make_integration(client, admin_headers)
    url = f"/integrations/{integration['key']}/events"
    # A first event does the integration's hourly bookkeeping, which would serialize the
    # requests below by itself.
    assert (await client.post(url, json=trigger("warm-up"))).status_code == 202
    responses = await asyncio.gather(*(client.post(url, json=trigger("race")) for _ in range(8)))
    assert [r.status_code for r in responses] == [202] * 8
    log = [
        e
        for e in await events(client, admin_headers, integration["id"])
        if e["dedup_key"] == "race"
    ]
    assert sorted(e["outcome"] for e in log) == ["created"] + ["updated"] * 7
    assert len({e["task_id"] for e in log}) == 1


async def _audit_of(client: httpx.AsyncClient, admin: Headers, entity_id: str) -> int:
    response = await client.get(
        "/audit-logs", params={"entity_id": entity_id, "page_size": 1}, headers=admin
    )
    assert response.status_code == 200, response.text
    return int(response.json()["pagination"]["total_items"])


async def test_concurrent_requests_are_answered_each_on_its_own(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    """Requests that arrive together are committed together, yet each gets its own answer:
    a refused body or an unknown key fails alone and writes nothing."""
    integration = await make_integration(client, admin_headers)
    url = f"/integrations/{integration['key']}/events"
    responses = await asyncio.gather(
        client.post(url, json=trigger("together-a")),
        client.post(url, content=b"{not json", headers={"content-type": "application/json"}),
        client.post("/integrations/no-such-key/events", json=trigger("together-x")),
        client.post(url, json=trigger("together-b")),
        client.post(url, json={"event_action": "resolve"}),  # no dedup key
    )
    assert [r.status_code for r in responses] == [202, 400, 404, 202, 400]
    assert responses[0].json()["dedup_key"] == "together-a"
    assert responses[3].json()["dedup_key"] == "together-b"
    log = await events(client, admin_headers, integration["id"])
    assert sorted((e["dedup_key"], e["outcome"]) for e in log) == [
        ("together-a", "created"),
        ("together-b", "created"),
    ]
    assert len({e["task_id"] for e in log}) == 2


class _TickingClock(SettableClock):
    """A millisecond later at every reading: the intake reads the clock as it queues a
    request, so the instants received order the requests as they were queued."""

    def now(self) -> datetime:
        return self.advance(milliseconds=1)


def _expected(log: list[dict[str, Any]]) -> tuple[list[str], dict[str, tuple[int, str]]]:
    """One key's events applied one at a time in the order received: their outcomes, and
    each incident's alert count and last event."""
    outcomes: list[str] = []
    incidents: dict[str, tuple[int, str]] = {}
    open_count = 0
    for event in log:
        if event["action"] == "trigger":
            outcomes.append("updated" if open_count else "created")
            open_count += 1
        elif event["action"] == "acknowledge":
            outcomes.append("failed")  # the incident was started by hand: refused
        else:
            outcomes.append("resolved" if open_count else "ignored")
        if event["task_id"] is not None and event["outcome"] != "ignored":
            incidents[event["task_id"]] = (open_count, event["received_at"])
        if event["action"] == "resolve":
            open_count = 0
    return outcomes, incidents


async def test_batches_in_flight_apply_each_key_in_arrival_order(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    """Requests for the same keys spread over batches of four, two batches in flight: each
    key's events apply exactly once, in the order they were received, also across a batch
    whose set-based pass fails (an acknowledgement the rules refuse) and is applied again
    request by request."""
    from opsflow.integrations.intake import AlertIntake

    context = client._transport.app.state.context  # type: ignore[attr-defined]
    context.clock = _TickingClock(context.clock.now())
    context.alert_intake = AlertIntake(context, max_batch=4)
    integration = await make_integration(client, admin_headers, flap_threshold=1000)
    url = f"/integrations/{integration['key']}/events"

    def event(action: str, key: str, n: int) -> dict[str, Any]:
        payload = {"summary": f"{key} {n}", "severity": "warning", "source": key}
        return {"event_action": action, "dedup_key": key, "payload": payload}

    assert (await client.post(url, json=event("trigger", "held", 0))).status_code == 202
    held = (await events(client, admin_headers, integration["id"]))[0]["task_id"]
    started = await client.patch(f"/tasks/{held}/start", headers=admin_headers)
    assert started.status_code == 200, started.text
    bodies = [event("trigger" if n % 3 else "acknowledge", "held", n) for n in range(1, 13)]
    for n in range(8):
        action = "resolve" if n % 3 == 2 else "trigger"
        bodies += [event(action, f"key-{k}", n) for k in range(5)]
    random.Random(9).shuffle(bodies)
    answers = await asyncio.gather(*(client.post(url, json=body) for body in bodies))
    assert [a.status_code for a in answers] == [202] * len(bodies)

    response = await client.get(
        f"/integrations/{integration['id']}/events",
        params={"page_size": 100},
        headers=admin_headers,
    )
    log = sorted(response.json()["items"], key=lambda e: datetime.fromisoformat(e["received_at"]))
    assert len(log) == len(bodies) + 1  # each event recorded once
    for key in ["held", *(f"key-{k}" for k in range(5))]:
        mine = [e for e in log if e["dedup_key"] == key]
        outcomes, incidents = _expected(mine)
        assert [e["outcome"] for e in mine] == outcomes, key
        for task_id, (count, last) in incidents.items():
            alert = (await task(client, admin_headers, task_id))["metadata"]["alert"]
            assert (alert["count"], alert["last_seen"]) == (count, last), key


async def test_a_resend_updates_the_alert_only(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    """A re-send that changes nothing but the count and last seen is not a change of the
    incident: no audit row, no new version, the latest payload kept."""
    integration = await make_integration(client, admin_headers)
    first = await send(client, integration["key"], trigger("resent"))
    assert first.status_code == 202
    task_id = (await events(client, admin_headers, integration["id"]))[0]["task_id"]
    before = await task(client, admin_headers, task_id)
    audited = await _audit_of(client, admin_headers, task_id)
    again = trigger("resent")
    again["payload"]["custom_details"] = {"free_gb": 3}
    assert (await send(client, integration["key"], again)).status_code == 202
    after = await task(client, admin_headers, task_id)
    assert after["version"] == before["version"]
    assert after["updated_at"] == before["updated_at"]
    alert = after["metadata"]["alert"]
    assert alert["count"] == 2
    assert alert["payload"]["payload"]["custom_details"] == {"free_gb": 3}
    assert alert["last_seen"] > before["metadata"]["alert"]["last_seen"]
    assert await _audit_of(client, admin_headers, task_id) == audited
    # A worse severity is a change: audited, the priority raised.
    assert (await send(client, integration["key"], trigger("resent", "critical"))).status_code
    raised = await task(client, admin_headers, task_id)
    assert raised["priority"] == "CRITICAL"
    assert raised["version"] > before["version"]
    assert await _audit_of(client, admin_headers, task_id) > audited


async def test_resends_of_a_batch_are_written_once_beside_the_full_rules(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    """Re-sends interleaved with events that take the full rules (an escalation, an
    acknowledgement) in the same group commit: the re-sends are written with one UPDATE
    per batch, after the rules, and none of them is lost or undone by the rules' writes."""
    from sqlalchemy import event as sa_event

    context = client._transport.app.state.context  # type: ignore[attr-defined]
    integration = await make_integration(client, admin_headers, flap_threshold=1000)
    key = integration["key"]
    for name in ("mixed", "plain-a", "plain-b"):
        assert (await send(client, key, trigger(name))).status_code == 202
    updates: list[str] = []

    def seen(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE TASKS SET METADATA"):
            updates.append(statement)

    def commits() -> float:
        name = "opsflow_alert_batch_requests_count"
        return float(context.metrics.registry.get_sample_value(name) or 0.0)

    before = commits()
    sa_event.listen(context.engine.sync_engine, "before_cursor_execute", seen)
    try:
        bodies = [
            trigger("plain-a"),
            trigger("mixed"),
            trigger("mixed", severity="critical"),
            trigger("plain-b"),
            {"event_action": "acknowledge", "dedup_key": "mixed"},
            trigger("plain-a"),
            trigger("mixed"),
        ]
        answers = await asyncio.gather(
            *(client.post(f"/integrations/{key}/events", json=body) for body in bodies)
        )
    finally:
        sa_event.remove(context.engine.sync_engine, "before_cursor_execute", seen)
    assert [a.status_code for a in answers] == [202] * len(bodies)
    assert 1 <= len(updates) <= commits() - before
    log = await events(client, admin_headers, integration["id"])
    latest = {e["dedup_key"]: e for e in reversed(log)}
    mixed = await task(client, admin_headers, latest["mixed"]["task_id"])
    assert mixed["metadata"]["alert"]["count"] == 4
    assert mixed["priority"] == "CRITICAL"
    assert mixed["acknowledged_at"] is not None
    plain_a = await task(client, admin_headers, latest["plain-a"]["task_id"])
    assert plain_a["metadata"]["alert"]["count"] == 3
    plain_b = await task(client, admin_headers, latest["plain-b"]["task_id"])
    assert plain_b["metadata"]["alert"]["count"] == 2
    verify = await client.get("/audit-logs/verify", headers=admin_headers)
    assert verify.json()["valid"] is True, verify.text


async def test_one_open_incident_per_key_is_a_database_rule(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    """Even a writer that skips the dedup-key locks cannot open a second incident for an
    alert whose incident is open (the partial unique index), while a completed one does not
    count."""
    from sqlalchemy import Table, insert, select, update
    from sqlalchemy.exc import IntegrityError

    from opsflow.models.task import Task

    integration = await make_integration(client, admin_headers)
    assert (await send(client, integration["key"], trigger("unique"))).status_code == 202
    context = client._transport.app.state.context  # type: ignore[attr-defined]
    table = cast(Table, Task.__table__)
    async with context.engine.connect() as connection:
        row = (await connection.execute(select(table).where(table.c.dedup_key == "unique"))).one()
    copy_of = {k: v for k, v in row._mapping.items() if k not in {"id", "external_id"}}
    with pytest.raises(IntegrityError):
        async with context.engine.begin() as connection:
            await connection.execute(
                insert(table).values(**copy_of, id=uuid.uuid4(), external_id="unique#copy")
            )
    async with context.engine.connect() as connection:
        await connection.execute(
            update(table).where(table.c.id == row.id).values(completed_at=row.created_at)
        )
        # The first one completed, a new one may open.
        await connection.execute(
            insert(table).values(**copy_of, id=uuid.uuid4(), external_id="unique#next")
        )
        await connection.rollback()


async def _flapping_pass(client: httpx.AsyncClient) -> dict[str, int]:
    from opsflow.composition import engine_registry

    context = client._transport.app.state.context  # type: ignore[attr-defined]
    engine = engine_registry(context.settings).get("flapping")
    report = await engine.run(context, batch=engine.batch)
    return dict(report.counts)


async def test_a_flapping_incident_settles_without_another_event(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    """The flapping engine finds the incident when its flips age out of the window and
    settles it: the mark goes, and the resolution it held completes the incident."""
    integration = await make_integration(
        client, admin_headers, flap_threshold=3, flap_window_minutes=30
    )
    key = integration["key"]
    resolve = {"event_action": "resolve", "dedup_key": "quiet"}
    for body in (trigger("quiet"), resolve, trigger("quiet"), resolve):  # 4 flips > 3
        await send(client, key, body)
        clock.advance(minutes=1)
    log = await events(client, admin_headers, integration["id"])
    assert log[0]["outcome"] == "held"
    incident = log[0]["task_id"]

    assert await _flapping_pass(client) == {
        "checked": 0,
        "settled": 0,
        "resolved": 0,
        "waiting": 0,
        "gone": 0,
        "failed": 0,
    }
    # The first flip (at 0) leaves the 30-minute window just after 30 min: then three flips
    # remain, no more than the threshold.
    clock.advance(minutes=25)  # about 29 min after the first event
    assert (await _flapping_pass(client))["checked"] == 0
    still = await task(client, admin_headers, incident)
    assert "flapping" in still["tags"]
    assert still["status"] != "COMPLETED"
    clock.advance(minutes=2)
    counts = await _flapping_pass(client)
    assert counts["checked"] == 1
    assert counts["resolved"] == 1
    settled = await task(client, admin_headers, incident)
    assert "flapping" not in settled["tags"]
    assert settled["status"] == "COMPLETED"
    assert settled["metadata"]["alert"]["flapping"] is False
    assert (await _flapping_pass(client))["checked"] == 0  # settled once


async def test_a_firing_flapping_incident_settles_open(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    integration = await make_integration(
        client, admin_headers, flap_threshold=2, flap_window_minutes=10
    )
    key = integration["key"]
    resolve = {"event_action": "resolve", "dedup_key": "busy"}
    for body in (trigger("busy"), resolve, trigger("busy")):  # 3 flips > 2: reopened
        await send(client, key, body)
        clock.advance(minutes=1)
    log = await events(client, admin_headers, integration["id"])
    assert log[0]["outcome"] == "reopened"
    clock.advance(minutes=20)
    counts = await _flapping_pass(client)
    assert counts["settled"] == 1
    incident = await task(client, admin_headers, log[0]["task_id"])
    assert "flapping" not in incident["tags"]
    assert incident["status"] != "COMPLETED"


@pytest.mark.postgres
async def test_two_instances_open_one_incident_per_key(
    client: httpx.AsyncClient, admin_headers: Headers, settings: Any, clock: SettableClock
) -> None:
    """Two OpsFlow processes (two contexts, two group-commit queues, two connection pools)
    receiving the same alerts at once: one incident per key, every event logged once."""
    from opsflow.composition import build_context

    integration = await make_integration(client, admin_headers)
    url = f"/integrations/{integration['key']}/events"
    assert (await client.post(url, json=trigger("warm-up"))).status_code == 202
    other_context = build_context(settings, clock)
    other_app = create_app(settings, context=other_context)
    transport = httpx.ASGITransport(app=other_app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver/api/v1"
        ) as other:
            keys = [f"twin-{i}" for i in range(5)]
            sends = [
                sender.post(url, json=trigger(key))
                for _ in range(4)
                for key in keys
                for sender in (client, other)
            ]
            responses = await asyncio.gather(*sends)
    finally:
        await other_context.close()
    assert {r.status_code for r in responses} == {202}
    response = await client.get(
        f"/integrations/{integration['id']}/events",
        params={"page_size": 100},
        headers=admin_headers,
    )
    log = [e for e in response.json()["items"] if e["dedup_key"].startswith("twin-")]
    assert len(log) == 40
    for key in keys:
        outcomes = sorted(e["outcome"] for e in log if e["dedup_key"] == key)
        assert outcomes == ["created"] + ["updated"] * 7
        assert len({e["task_id"] for e in log if e["dedup_key"] == key}) == 1


async def test_a_new_incident_stores_what_the_task_rules_make_of_it(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    """The rows a first trigger writes set-based (task, audit row, outbox event) hold what
    the task rules compute from the incident as read back: its audited state (every value
    converted, the payload's numbers included) and its event's payload, to the byte."""
    from sqlalchemy import select

    from opsflow.integrations.ingest import principal
    from opsflow.kit.jsonable import to_jsonable
    from opsflow.models.audit import AuditLog
    from opsflow.models.integration import Integration
    from opsflow.models.outbox import OutboxEvent
    from opsflow.models.task import Task
    from opsflow.tasks.values import change_payload, task_state

    integration = await make_integration(client, admin_headers)
    body = trigger("pinned", severity="error")
    body["payload"]["custom_details"] = {
        "huge": 1e300,
        "ratio": 0.25,
        "whole": 3.0,
        "nested": [{"é": "ünïcode ✓", "n": None, "ok": True}, [1, 2.5, "x"]],
    }
    assert (await send(client, integration["key"], body)).status_code == 202
    context = client._transport.app.state.context  # type: ignore[attr-defined]
    async with context.sessions() as session:
        task = (await session.scalars(select(Task).where(Task.dedup_key == "pinned"))).one()
        audit = (await session.scalars(select(AuditLog).where(AuditLog.entity_id == task.id))).one()
        event = (
            await session.scalars(select(OutboxEvent).where(OutboxEvent.aggregate_id == task.id))
        ).one()
        source = await session.get(Integration, uuid.UUID(integration["id"]))
        assert source is not None
        actor = principal(source)
        details = task.metadata_["alert"]["payload"]["payload"]["custom_details"]
        assert details["huge"] == int(1e300)
        assert isinstance(details["huge"], int)
        assert details["nested"] == body["payload"]["custom_details"]["nested"]
        assert audit.action == "TASK_CREATED"
        assert audit.new_state == task_state(task)
        assert json.dumps(audit.new_state, sort_keys=True) == json.dumps(
            task_state(task), sort_keys=True
        )
        assert (audit.previous_state, audit.changes, audit.metadata_) == (None, None, {})
        expected = to_jsonable({**change_payload(actor, task), "request_id": audit.request_id})
        assert json.dumps(event.payload, sort_keys=True) == json.dumps(expected, sort_keys=True)
    verify = await client.get("/audit-logs/verify", headers=admin_headers)
    assert verify.json()["valid"] is True, verify.text


async def test_a_batch_writes_its_resends_and_rule_changes_each_with_one_statement(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    """One set-based batch of plain re-sends and escalations: the re-sent incidents keep
    their version and take the new count, the escalated ones their new priority and next
    version, and their clocks the new targets and deadlines. On PostgreSQL each UPDATE of
    tasks, and of the re-planned clocks, goes as one statement on the server (an
    executemany would run it, and the table's statement triggers, once per row)."""
    from sqlalchemy import event, select

    from opsflow.db import unit_of_work
    from opsflow.integrations import batch as alert_batch
    from opsflow.integrations.parsers import parse_generic
    from opsflow.models.integration import Integration
    from opsflow.models.sla import SlaClock
    from opsflow.models.task import Task

    integration = await make_integration(client, admin_headers)
    keys = [f"batched-{i}" for i in range(4)]
    for key in keys:
        assert (await send(client, integration["key"], trigger(key))).status_code == 202
    context = client._transport.app.state.context  # type: ignore[attr-defined]
    updates: list[tuple[str, bool]] = []
    clock_updates: list[bool] = []

    def seen(_c: Any, _cur: Any, statement: str, _p: Any, _x: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE TASKS"):
            updates.append((statement, many))
        if statement.lstrip().upper().startswith("UPDATE SLA_CLOCKS"):
            clock_updates.append(many)

    engine = context.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    severities = ("warning", "info", "critical", "critical")
    try:
        async with unit_of_work(context.sessions) as session:
            row = await session.get(Integration, uuid.UUID(integration["id"]))
            assert row is not None
            now = context.clock.now()
            items = [
                alert_batch.Item(row, [parse_generic(trigger(key, severity))], now)
                for key, severity in zip(keys, severities, strict=True)
            ]
            outcomes = await alert_batch.apply_batch(session, context, items, deferred=True)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert [o.outcome for (o,) in outcomes] == ["updated", "updated", "escalated", "escalated"]
    assert len(updates) == 2  # the re-sends' metadata, the escalations' changes
    assert clock_updates  # the escalations re-planned the clocks
    if context.engine.dialect.name == "postgresql":
        assert [many for _, many in updates] == [False, False]
        assert clock_updates == [False]  # both clocks of both incidents
    async with context.sessions() as session:
        rows = await session.scalars(select(Task).where(Task.dedup_key.in_(keys)))
        tasks = {t.dedup_key: t for t in rows}
        clocks = {
            (c.task_id, c.kind): c
            for c in await session.scalars(
                select(SlaClock).where(SlaClock.task_id.in_([t.id for t in tasks.values()]))
            )
        }
    for key in keys:
        incident = tasks[key]
        start, resolve = clocks[(incident.id, "START")], clocks[(incident.id, "RESOLVE")]
        assert (start.target_minutes, start.deadline) == (
            incident.start_sla_minutes,
            incident.start_deadline,
        )
        assert (resolve.target_minutes, resolve.deadline) == (
            incident.resolve_sla_minutes,
            incident.resolve_deadline,
        )
    assert tasks[keys[2]].resolve_sla_minutes != tasks[keys[0]].resolve_sla_minutes
    for key in keys[:2]:
        assert tasks[key].version == 1
        assert tasks[key].metadata_["alert"]["count"] == 2
        assert tasks[key].metadata_["alert"]["severity"] == "warning"
    for key in keys[2:]:
        assert tasks[key].version == 2
        assert tasks[key].priority == "CRITICAL"
        assert tasks[key].metadata_["alert"]["count"] == 2
