"""OPSFLOW_SLA_CONFIG: the file is applied at start, followed on every change (a real
file-system watcher), audited, and an invalid edit changes nothing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsflow.app import create_app
from opsflow.clock import SettableClock
from opsflow.composition import build_context
from opsflow.config import ConfigError
from tests.conftest import assert_error, make_settings
from tests.factories import ADMIN_PASSWORD, login

FIRST = """
sla_targets:
  ENTERPRISE:
    P0: {response_minutes: 15, resolution_minutes: 60}
"""
SECOND = """
sla_targets:
  ENTERPRISE:
    P0: {response_minutes: 20, resolution_minutes: 60}
  PREMIUM:
    P1: {response_minutes: 120, resolution_minutes: 480}
"""


def write(path: Path, text: str) -> None:
    """Replace the file the way deployment tools do: write a sibling, rename it over."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, "utf-8")
    os.replace(temporary, path)


async def until(predicate: Callable[[], Any], what: str, within: float = 15.0) -> None:
    """Wait for the watcher to notice a file change (not for any SLA deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def file_app(
    database_url: str, tmp_path: Path, clock: SettableClock
) -> AsyncIterator[tuple[Any, Path, httpx.AsyncClient]]:
    path = tmp_path / "sla_config.yaml"
    write(path, FIRST)
    settings = make_settings(database_url, sla_config_path=path)
    context = build_context(settings, clock)
    application = create_app(settings, context=context)
    try:
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver/api/v1"
            ) as client:
                yield application, path, client
    finally:
        await context.close()


async def _policies(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/sla-policies", headers=headers)
    assert response.status_code == 200, response.text
    return {p["name"]: p for p in response.json()["items"]}


async def test_file_is_applied_followed_and_audited(
    file_app: tuple[Any, Path, httpx.AsyncClient],
) -> None:
    application, path, client = file_app
    headers = await login(client, "admin", ADMIN_PASSWORD)
    policies = await _policies(client, headers)
    assert list(policies) == ["enterprise-p0"]
    assert (policies["enterprise-p0"]["start_minutes"], policies["enterprise-p0"]["source"]) == (
        15,
        "file",
    )

    # The API may not edit what the file owns.
    refused = await client.post(
        "/sla-policies",
        json={"name": "manual", "start_minutes": 5, "resolve_minutes": 10},
        headers=headers,
    )
    assert_error(refused, 409, "CONFLICT")

    write(path, SECOND)

    async def reloaded() -> bool:
        current = await _policies(client, headers)
        return "premium-p1" in current and current["enterprise-p0"]["start_minutes"] == 20

    await until(reloaded, "the second file to be applied")
    audit = await client.get(
        "/audit-logs", params={"entity_type": "sla_policy", "page_size": 50}, headers=headers
    )
    rows = audit.json()["items"]
    actions = sorted((row["action"], row["actor"]["username"]) for row in rows)
    assert actions == [
        ("SLA_POLICY_CREATED", "sla-config-file"),  # enterprise-p0 at start
        ("SLA_POLICY_CREATED", "sla-config-file"),  # premium-p1
        ("SLA_POLICY_UPDATED", "sla-config-file"),  # enterprise-p0 15 -> 20
    ]
    updated = next(row for row in rows if row["action"] == "SLA_POLICY_UPDATED")
    assert updated["changes"]["start_minutes"] == {"from": 15, "to": 20}

    watcher = application.state.sla_config_watcher
    write(path, "sla_targets:\n  ENTERPRISE:\n    P0: {response_minutes: -1}\n")

    async def rejected() -> bool:
        return bool(watcher.rejected >= 1)

    await until(rejected, "the invalid edit to be rejected")
    after = await _policies(client, headers)
    assert after["enterprise-p0"]["start_minutes"] == 20
    assert set(after) == {"enterprise-p0", "premium-p1"}

    # A task follows the file's policy.
    task = await client.post(
        "/tasks",
        json={"title": "VIP down", "priority": "CRITICAL", "customer_tier": "ENTERPRISE"},
        headers=headers,
    )
    assert task.status_code == 201, task.text
    assert task.json()["start_sla_minutes"] == 20


async def test_an_invalid_file_stops_the_start(
    database_url: str, tmp_path: Path, clock: SettableClock
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("sla_targets: [", "utf-8")
    settings = make_settings(database_url, sla_config_path=path)
    context = build_context(settings, clock)
    application = create_app(settings, context=context)
    try:
        with pytest.raises(ConfigError, match=r"broken\.yaml"):
            async with application.router.lifespan_context(application):
                pass
    finally:
        await context.close()
