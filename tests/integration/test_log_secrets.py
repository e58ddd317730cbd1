"""Every log line a real `opsflow serve` (API and engines, INFO level) writes through a full
scenario — logins, a token refresh, tasks, an API client and its secret, a signed webhook, an
e-mail delivery, a password change, a wrong password, a token in a query string — and not
one of them holds a secret: the JWT signing key, a password, an access or refresh token, the
client's or the webhook's secret.

The access log lines are JSON with the documented fields, and the engines log their passes
with counts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import opsflow_serve
from tests.sinks import HttpSink, SmtpSink

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

JWT_KEY = "jwt-signing-key-for-the-log-scan-0123456789abcdef"
ADMIN_PASSWORD = "Log-Scan-Admin-Pass-1"
USER_PASSWORD = "Log-Scan-User-Pass-2"
NEW_PASSWORD = "Log-Scan-New-Pass-3"
WRONG_PASSWORD = "Log-Scan-Wrong-Guess-4"
WEBHOOK_SECRET = "whsec_log_scan_webhook_secret_5"
ACCESS_FIELDS = {
    "timestamp",
    "level",
    "event",
    "request_id",
    "user_id",
    "method",
    "path",
    "status",
    "duration_ms",
}
WAIT_SECONDS = 60  # at most, for the engine to deliver what the scenario queued


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def _until(condition: Any, what: str) -> None:
    """Poll until the engine process did its part (bounded; not a wait for a deadline)."""
    for _ in range(WAIT_SECONDS * 10):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not happen")


async def _scenario(api: httpx.AsyncClient, hooks: HttpSink, sink: SmtpSink) -> list[str]:
    """Run it; the secrets it saw."""
    secrets = [JWT_KEY, ADMIN_PASSWORD, USER_PASSWORD, NEW_PASSWORD, WRONG_PASSWORD]
    tokens = _ok(
        await api.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    )
    secrets += [tokens["access_token"], tokens["refresh_token"]]
    refreshed = _ok(
        await api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    )
    secrets += [refreshed["access_token"], refreshed["refresh_token"]]
    admin = {"Authorization": f"Bearer {refreshed['access_token']}"}

    user = _ok(
        await api.post(
            "/auth/register",
            json={
                "email": "scan.user@example.com",
                "username": "scan.user",
                "password": USER_PASSWORD,
                "full_name": "Scan User",
                "role": "developer",
            },
            headers=admin,
        ),
        201,
    )
    user_tokens = _ok(
        await api.post("/auth/login", json={"username": "scan.user", "password": USER_PASSWORD})
    )
    secrets += [user_tokens["access_token"], user_tokens["refresh_token"]]
    as_user = {"Authorization": f"Bearer {user_tokens['access_token']}"}

    client = _ok(
        await api.post(
            "/api-clients", json={"name": "scan-robot", "scopes": ["tasks:read"]}, headers=admin
        ),
        201,
    )
    secrets.append(client["client_secret"])
    granted = _ok(
        await api.post(
            "/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client["client_id"],
                "client_secret": client["client_secret"],
            },
        )
    )
    secrets.append(granted["access_token"])
    _ok(await api.get("/tasks", headers={"Authorization": f"Bearer {granted['access_token']}"}))

    secrets.append(WEBHOOK_SECRET)
    _ok(
        await api.post(
            "/webhooks",
            json={
                "name": "scan-hook",
                "url": f"{hooks.url}/hook",
                "event_types": ["task.*"],
                "secret": WEBHOOK_SECRET,
            },
            headers=admin,
        ),
        201,
    )
    for title in ("Disk almost full", "Certificate expires"):
        _ok(
            await api.post(
                "/tasks", json={"title": title, "assigned_to": user["id"]}, headers=admin
            ),
            201,
        )
    # A token where it should never be: in a query string.
    await api.get("/users/me", params={"access_token": refreshed["access_token"]})
    await _until(lambda: len(hooks.requests) >= 2, "the webhook deliveries")
    await _until(
        lambda: any("scan.user@example.com" in r.rcpt_tos for r in sink.received),
        "the e-mail delivery",
    )

    _ok(
        await api.patch(
            f"/users/{user['id']}",
            json={"password": NEW_PASSWORD, "current_password": USER_PASSWORD},
            headers=as_user,
        )
    )
    wrong = await api.post(
        "/auth/login", json={"username": "scan.user", "password": WRONG_PASSWORD}
    )
    assert wrong.status_code == 401
    _ok(await api.post("/auth/login", json={"username": "scan.user", "password": NEW_PASSWORD}))
    return secrets


async def test_no_secret_reaches_a_log_line(
    database_url: str, tmp_path: Path, smtp: tuple[SmtpSink, int], hooks: HttpSink
) -> None:
    env = {
        "JWT_SECRET_KEY": JWT_KEY,
        "LOG_LEVEL": "INFO",
        "OPSFLOW_RATE_LIMIT_ENABLED": "true",
        "OPSFLOW_SMTP_HOST": "127.0.0.1",
        "OPSFLOW_SMTP_PORT": str(smtp[1]),
        "OPSFLOW_SMTP_STARTTLS": "false",
        "OPSFLOW_ENGINE_INTERVAL_SECONDS": "0.2",
    }
    with opsflow_serve(
        tmp_path, database_url, ADMIN_PASSWORD, name="scan", no_engine=False, **env
    ) as base:
        async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30) as api:
            secrets = await _scenario(api, hooks, smtp[0])
    lines = (tmp_path / "scan.log").read_text().splitlines()

    # Tokens are also looked for piece by piece (a JWT's payload or signature alone).
    needles = set(secrets)
    for secret in secrets:
        needles.update(part for part in secret.split(".") if len(part) >= 16)
    leaks = [(n[:12], line) for line in lines for n in needles if n in line]
    assert leaks == [], leaks

    records = [json.loads(line) for line in lines if line.startswith("{")]
    access = [r for r in records if r.get("event") == "request"]
    assert len(access) >= 12
    for record in access:
        assert set(record) >= ACCESS_FIELDS, record
    assert any(r["user_id"] for r in access)
    assert any("[REDACTED]" in (r.get("query") or "") for r in access)
    passes = {r["event"] for r in records if str(r.get("event", "")).endswith("_pass")}
    assert {"relay_pass", "delivery_pass"} <= passes, passes
