"""A real Prometheus Alertmanager notifying a real `opsflow serve` through its webhook.

Alertmanager is started on loopback with tiny group_wait/group_interval/repeat_interval and
a receiver pointing at the Alertmanager endpoint of an integration. Alerts are posted to
Alertmanager's own API: it groups them, notifies, re-sends the whole group at every repeat,
and sends resolutions — OpsFlow must keep exactly one incident per alert throughout.
PostgreSQL only (it runs processes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import free_port, opsflow_serve, stop

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ADMIN_PASSWORD = "Alertmanager-Admin-Pass-1"
BINARIES = ("prometheus-alertmanager", "alertmanager")
WAIT_SECONDS = 90


def _binary() -> str:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("OPSFLOW_REQUIRE_SERVICES") == "1":
        raise AssertionError("prometheus-alertmanager is not installed (.ci/run installs it)")
    pytest.skip("prometheus-alertmanager is not installed")


CONFIG = """\
route:
  receiver: opsflow
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: opsflow
    webhook_configs:
      - url: {url}
        send_resolved: true
"""


@pytest.fixture
def opsflow(database_url: str, tmp_path: Path) -> Iterator[str]:
    workdir = tmp_path / "opsflow"
    workdir.mkdir()
    with opsflow_serve(workdir, database_url, ADMIN_PASSWORD) as base:
        yield base


def _alertmanager(tmp_path: Path, webhook: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = _binary()
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG.format(url=webhook))
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"alertmanager exited early:\n{output}")
        try:
            if httpx.get(f"{base}/-/ready", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling for the process to come up
    process.kill()
    raise AssertionError("alertmanager did not become ready in 30 s")


def _until(what: str, check: Callable[[], Any]) -> Any:
    """Poll until `check` returns something truthy (Alertmanager notifies on its own time)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _alert(instance: str, *, starts: datetime, ends: datetime | None = None) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "labels": {"alertname": "DiskFull", "instance": instance, "severity": "critical"},
        "annotations": {"summary": f"Disk full on {instance}"},
        "startsAt": _iso(starts),
        "generatorURL": "http://prometheus.example:9090/graph",
    }
    if ends is not None:
        alert["endsAt"] = _iso(ends)
    return alert


def test_real_alertmanager_one_incident_per_alert(opsflow: str, tmp_path: Path) -> None:
    api = httpx.Client(base_url=f"{opsflow}/api/v1", timeout=30)
    token = api.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert token.status_code == 200, token.text
    admin = {"Authorization": f"Bearer {token.json()['access_token']}"}
    created = api.post(
        "/integrations", json={"name": "prometheus", "type": "alertmanager"}, headers=admin
    )
    assert created.status_code == 201, created.text
    integration = created.json()
    webhook = f"{opsflow}/api/v1/integrations/{integration['key']}/alertmanager"
    am_process, am = _alertmanager(tmp_path, webhook)

    def log() -> list[dict[str, Any]]:
        response = api.get(
            f"/integrations/{integration['id']}/events",
            params={"page_size": 100},
            headers=admin,
        )
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    def incidents() -> dict[str, dict[str, Any]]:
        response = api.get(
            "/tasks", params={"task_type": "INCIDENT", "page_size": 100}, headers=admin
        )
        assert response.status_code == 200, response.text
        return {t["id"]: t for t in response.json()["items"]}

    def post_alerts(*alerts: dict[str, Any]) -> None:
        response = httpx.post(f"{am}/api/v2/alerts", json=list(alerts), timeout=10)
        assert response.status_code == 200, response.text

    try:
        now = datetime.now(UTC)
        post_alerts(_alert("db-1", starts=now), _alert("db-2", starts=now))

        # Two alerts in one group: two incidents.
        _until("two incidents", lambda: len(incidents()) == 2)
        by_key = {e["dedup_key"]: e["task_id"] for e in log() if e["outcome"] == "created"}
        assert len(by_key) == 2

        # Repeat notifications re-send the whole group: updates, no new incident.
        _until("repeat notifications", lambda: sum(e["outcome"] == "updated" for e in log()) >= 4)
        assert len(incidents()) == 2
        assert all(e["outcome"] in ("created", "updated") for e in log())

        # Resolving db-1 completes only its incident.
        resolved_at = datetime.now(UTC) - timedelta(seconds=1)
        post_alerts(_alert("db-1", starts=now, ends=resolved_at))
        resolved = _until(
            "the resolution",
            lambda: [e for e in log() if e["outcome"] == "resolved"],
        )
        assert len(resolved) == 1
        first_id = resolved[0]["task_id"]
        states = {i: t["status"] for i, t in incidents().items()}
        assert states[first_id] == "COMPLETED"
        (other_id,) = set(states) - {first_id}
        assert states[other_id] != "COMPLETED"

        # Firing db-1 again opens a new incident, linked to the completed one.
        post_alerts(_alert("db-1", starts=datetime.now(UTC)))
        _until("a third incident", lambda: len(incidents()) == 3)
        (new_id,) = set(incidents()) - {first_id, other_id}
        new = api.get(f"/tasks/{new_id}", headers=admin).json()
        assert new["metadata"]["alert"]["previous_incident"] == first_id
        # More repeats still add nothing.
        seen = len(log())
        _until("more repeat notifications", lambda: len(log()) >= seen + 4)
        assert len(incidents()) == 3
        statuses = {i: t["status"] for i, t in incidents().items()}
        assert statuses[first_id] == "COMPLETED"
        assert statuses[other_id] != "COMPLETED"
        assert statuses[new_id] != "COMPLETED"
    finally:
        stop(am_process)
        api.close()
