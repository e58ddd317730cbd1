"""The heartbeats engine in a real `opsflow engine --passes heartbeats` process: a monitor
whose signal is long overdue (signalled at the test clock's instant, months before the
process's wall clock) goes down and opens its INCIDENT, once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from opsflow.context import AppContext


def _run_engine(database_url: str, workdir: Path) -> list[dict[str, Any]]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("OPSFLOW_") and key not in {"DATABASE_URL", "REDIS_URL"}
    }
    env.update({"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"})
    done = subprocess.run(
        [sys.executable, "-m", "opsflow", "engine", "--passes", "heartbeats", "--once"],
        cwd=workdir,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]


async def test_an_engine_process_opens_the_incident_of_an_overdue_monitor(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app_context: AppContext,
    database_url: str,
    tmp_path: Path,
) -> None:
    response = await client.post(
        "/heartbeat-monitors",
        json={"name": "replication-check", "period_seconds": 300, "grace_seconds": 60},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    monitor = response.json()
    assert (await client.get(f"/heartbeats/{monitor['ping_key']}")).status_code == 200

    records = _run_engine(database_url, tmp_path)
    [heartbeat_pass] = [r for r in records if r["event"] == "heartbeats_pass"]
    assert (heartbeat_pass["monitors"], heartbeat_pass["incidents"]) == (1, 1), records
    view = (await client.get(f"/heartbeat-monitors/{monitor['id']}", headers=admin_headers)).json()
    assert view["state"] == "down"
    incident = view["open_incident_id"]
    assert incident is not None
    task = (await client.get(f"/tasks/{incident}", headers=admin_headers)).json()
    assert (task["task_type"], task["source"]) == ("INCIDENT", "heartbeat")

    records = _run_engine(database_url, tmp_path)  # nothing more is due
    assert [r for r in records if r["event"] == "heartbeats_pass"] == [], records
    again = (await client.get(f"/heartbeat-monitors/{monitor['id']}", headers=admin_headers)).json()
    assert again["open_incident_id"] == incident
    listed = await client.get("/tasks", params={"task_type": "INCIDENT"}, headers=admin_headers)
    assert listed.json()["pagination"]["total_items"] == 1
