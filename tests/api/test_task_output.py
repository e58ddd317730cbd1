"""The exact bytes of a task's read and of a page of tasks, for tasks in every SLA situation
(running, warning, critical, breached, paused, met, cancelled, acknowledged). The read models
are built for speed (each clock's view computed once, the detail built in one go); this pins
their JSON to a recorded rendering, byte for byte, so that a faster build can never change
what a client sees. Identifiers are replaced by their order of appearance; every instant
comes from the settable clock, so the rest is deterministic.

To record a new rendering after a deliberate change of the output:
RECORD_TASK_OUTPUT=1 pytest tests/api/test_task_output.py
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import httpx

from opsflow.clock import SettableClock
from tests.api.tasks_support import Headers, act, create_task
from tests.factories import make_user

GOLDEN = Path(__file__).parent / "data" / "task_output.txt"
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _compact(value: object, *, sort_keys: bool = False) -> bytes:
    return json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys
    ).encode()


def _canonical_changes(body: bytes) -> bytes:
    # An audit row's `changes` is stored as JSON; PostgreSQL's jsonb keeps its keys in its
    # own order, so those objects (and only those) are compared with their keys sorted.
    loaded = json.loads(body)
    for entry in loaded.get("audit_trail") or [] if isinstance(loaded, dict) else []:
        stored = _compact(entry["changes"])
        assert stored in body
        body = body.replace(stored, _compact(entry["changes"], sort_keys=True))
    return body


def _normalised(bodies: list[bytes]) -> bytes:
    seen: dict[bytes, bytes] = {}
    bodies = [_canonical_changes(body) for body in bodies]

    def name(match: re.Match[bytes]) -> bytes:
        return seen.setdefault(match.group(0), b"<id%d>" % len(seen))

    return b"\n".join(UUID.sub(name, body) for body in bodies) + b"\n"


async def _tasks(client: httpx.AsyncClient, headers: Headers, clock: SettableClock) -> list[str]:
    dev = await make_user(client, headers, "developer", username="dev-one")
    other = await make_user(client, headers, "developer", username="dev-two")
    ids: list[str] = []

    async def new(**fields: Any) -> str:
        task = await create_task(client, headers, **fields)
        ids.append(task["id"])
        clock.advance(minutes=1)
        return str(task["id"])

    await new(priority="LOW", tags=["a", "b"], metadata={"k": 1})
    acked = await new(priority="CRITICAL", assigned_to=dev.id)
    await act(client, acked, "acknowledge", headers)
    started = await new(priority="HIGH", assigned_to=dev.id)
    await act(client, started, "start", headers)
    await act(
        client,
        started,
        "assign",
        headers,
        {"assigned_to": dev.id, "additional_assignees": [other.id]},
    )
    done = await new(priority="MEDIUM", assigned_to=dev.id)
    await act(client, done, "start", headers)
    clock.advance(minutes=7)
    await act(client, done, "complete", headers, {"resolution_notes": "fixed"})
    paused = await new(priority="HIGH")
    await act(client, paused, "sla/pause", headers, {"reason": "waiting"})
    cancelled = await new(priority="LOW")
    response = await client.delete(f"/tasks/{cancelled}", headers=headers)
    assert response.status_code == 204, response.text
    await new(priority="CRITICAL", task_type="INCIDENT")
    return ids


async def test_reads_and_pages_render_as_recorded(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    ids = await _tasks(client, admin_headers, clock)
    bodies: list[bytes] = []
    # Steps in minutes: compliant, then warning and critical, then breached everywhere.
    for minutes in (0, 8, 8, 8, 8, 15, 30, 60, 120, 240, 480):
        if minutes:
            clock.advance(minutes=minutes)
        for task_id in ids:
            response = await client.get(f"/tasks/{task_id}", headers=admin_headers)
            assert response.status_code == 200, response.text
            bodies.append(response.content)
        page = await client.get(
            "/tasks", params={"page_size": 50, "include_deleted": "true"}, headers=admin_headers
        )
        assert page.status_code == 200, page.text
        bodies.append(page.content)
    rendered = _normalised(bodies)
    if os.environ.get("RECORD_TASK_OUTPUT"):
        GOLDEN.write_bytes(rendered)
    assert rendered == GOLDEN.read_bytes()
