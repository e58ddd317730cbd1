"""The task lifecycle over real HTTP against a running `opsflow serve` process.

Runs on SQLite (a fresh folder, as a new user would) and, when configured, PostgreSQL.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.processes import stop

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "Serve-Admin-Pass-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(
    workdir: Path, database_url: str | None, **extra_env: str
) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ,
        "OPSFLOW_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "OPSFLOW_PASSWORD_TIME_COST": "1",
        "OPSFLOW_PASSWORD_MEMORY_COST_KIB": "1024",
        "LOG_LEVEL": "WARNING",
        **extra_env,
    }
    env.pop("DATABASE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    process = subprocess.Popen(
        [sys.executable, "-m", "opsflow", "serve", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"opsflow serve exited early:\n{output}")
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling for the server to come up, not waiting on a deadline
    process.kill()
    raise AssertionError("opsflow serve did not become ready in 60 s")


@pytest.fixture
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    database_url = (
        request.getfixturevalue("database_url") if request.param == "configured" else None
    )
    process, base = _start(tmp_path, database_url)
    try:
        yield base
    finally:
        stop(process)
    if database_url is None:
        assert (tmp_path / "opsflow.db").exists(), "embedded mode creates ./opsflow.db"


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.parametrize("served", ["embedded", "configured"], indirect=True)
def test_lifecycle_over_http(served: str) -> None:
    with httpx.Client(base_url=f"{served}/api/v1", timeout=30) as http:
        docs = http.get("/docs")
        assert docs.status_code == 200
        assert "swagger" in docs.text.lower()
        token = http.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert token.status_code == 200, token.text
        admin = {"Authorization": f"Bearer {token.json()['access_token']}"}

        dev = http.post(
            "/auth/register",
            json={
                "email": "jane.smith@example.com",
                "username": "jane.smith",
                "password": "Jane-Pass-1234",
                "full_name": "Jane Smith",
                "role": "developer",
            },
            headers=admin,
        )
        assert dev.status_code == 201, dev.text
        dev_login = http.post(
            "/auth/login", json={"username": "jane.smith@example.com", "password": "Jane-Pass-1234"}
        )
        developer = {"Authorization": f"Bearer {dev_login.json()['access_token']}"}

        denied = http.post(
            "/tasks", json={"title": "x", "task_type": "TASK", "priority": "LOW"}, headers=developer
        )
        assert denied.status_code == 403
        assert denied.json()["error"]["required_role"]

        bad = http.post("/tasks", json={"title": "x", "priority": "URGENT"}, headers=admin)
        assert bad.status_code == 400
        assert bad.json()["error"]["details"][0]["field"] == "priority"

        created = http.post(
            "/tasks",
            json={
                "title": "Database connection pool exhaustion",
                "task_type": "INCIDENT",
                "priority": "CRITICAL",
                "assigned_to": dev.json()["id"],
                "start_sla_minutes": 15,
                "resolve_sla_minutes": 120,
            },
            headers=admin,
        )
        assert created.status_code == 201, created.text
        task = created.json()
        assert task["status"] == "ASSIGNED"
        born = _ts(task["created_at"])
        assert _ts(task["sla_status"]["start_deadline"]) == born + timedelta(minutes=15)
        assert _ts(task["sla_status"]["resolve_deadline"]) == born + timedelta(minutes=120)

        started = http.patch(f"/tasks/{task['id']}/start", headers=developer)
        assert started.status_code == 200
        assert started.json()["status"] == "IN_PROGRESS"
        done = http.patch(
            f"/tasks/{task['id']}/complete",
            json={"resolution_notes": "Pool size raised"},
            headers=developer,
        )
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "COMPLETED"
        assert done.json()["sla_status"]["resolve_met"] is True

        audit = http.get("/audit-logs", params={"entity_id": task["id"]}, headers=admin)
        items = audit.json()["items"]
        assert {i["action"] for i in items} >= {"TASK_CREATED", "TASK_STARTED", "TASK_COMPLETED"}
        assert all(i["actor"]["username"] for i in items)
        assert any(i["changes"] for i in items)
        assert http.get("/audit-logs/verify", headers=admin).json()["valid"] is True


def test_an_unknown_websocket_path_is_404_and_the_access_log_hides_tokens(tmp_path: Path) -> None:
    secret = "s3cr3t-Token-Value"
    process, base = _start(tmp_path, None, LOG_LEVEL="INFO")
    try:
        ws_url = base.replace("http://", "ws://") + f"/api/v1/nowhere?token={secret}&x=1"
        with pytest.raises(InvalidStatus) as refused, connect(ws_url, open_timeout=10):
            pass
        response = refused.value.response
        assert response.status_code == 404
        error = json.loads(response.body or b"{}")["error"]
        assert (error["code"], error["path"]) == ("NOT_FOUND", "/api/v1/nowhere")
        health = httpx.get(f"{base}/health?access_token={secret}&page=2", timeout=10)
        assert health.status_code == 200
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    lines = [json.loads(line) for line in output.decode().splitlines() if line.startswith("{")]
    logged = {(line.get("event"), line.get("path")): line for line in lines}
    assert logged[("websocket", "/api/v1/nowhere")]["query"] == "token=[REDACTED]&x=1"
    assert logged[("request", "/health")]["query"] == "access_token=[REDACTED]&page=2"
    assert secret not in output.decode()


def test_the_websocket_stream_of_a_real_server(tmp_path: Path) -> None:
    """A real `opsflow serve` (engines inside): a socket authenticated by its first frame
    receives the creation of a task assigned to its user, pushed by the embedded relay."""
    process, base = _start(tmp_path, None, OPSFLOW_ENGINE_INTERVAL_SECONDS="0.2")
    try:
        with httpx.Client(base_url=f"{base}/api/v1", timeout=30) as http:
            login = http.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
            token = login.json()["access_token"]
            me = http.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).json()
            ws_url = base.replace("http://", "ws://") + "/api/v1/ws"
            with connect(ws_url, open_timeout=10) as ws:
                ws.send(json.dumps({"action": "auth", "token": token}))
                assert json.loads(ws.recv(timeout=10))["type"] == "auth.ok"
                ws.send(json.dumps({"action": "subscribe", "channels": ["user:me"]}))
                assert json.loads(ws.recv(timeout=10))["channels"] == ["user:me"]
                created = http.post(
                    "/tasks",
                    json={"title": "pushed", "assigned_to": me["id"]},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert created.status_code == 201, created.text
                event = json.loads(ws.recv(timeout=30))  # the relay runs every 0.2 s
                ws.send("not json")
                error = json.loads(ws.recv(timeout=10))
    finally:
        process.terminate()
        process.communicate(timeout=15)
    assert event["type"] == "task.created"
    assert event["task"]["id"] == created.json()["id"]
    assert event["channels"] == [f"user:{me['id']}"]
    assert error["code"] == "invalid_json"
