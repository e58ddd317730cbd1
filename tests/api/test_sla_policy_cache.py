"""The policy catalog a create resolves against is kept in the process (sla.service.
CatalogCache) while the SLA configuration's revision stays: a change made anywhere — this
process's API, another process's session (the CLI's import) — applies to the next create,
and a change that rolls back is never served."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.principal import Principal
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.sla import service as sla_service
from opsflow.sla_config import service as sla_config_service
from tests.api.tasks_support import Headers, create_task

ENTERPRISE_ONLY = """
sla_targets:
  ENTERPRISE:
    P1:
      response_minutes: 45
      resolution_minutes: 180
"""


async def _incident(client: httpx.AsyncClient, headers: Headers, **fields: Any) -> dict[str, Any]:
    return await create_task(client, headers, task_type="INCIDENT", priority="HIGH", **fields)


async def test_a_policy_change_applies_to_the_next_create(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    before = await _incident(client, admin_headers)
    assert before["sla_policy_name"] is None  # the built-in targets

    policy = {
        "name": "incident-high",
        "task_type": "INCIDENT",
        "priority": "HIGH",
        "start_minutes": 7,
        "resolve_minutes": 70,
    }
    response = await client.post("/sla-policies", json=policy, headers=admin_headers)
    assert response.status_code == 201, response.text
    added = await _incident(client, admin_headers)
    assert (added["sla_policy_name"], added["start_sla_minutes"]) == ("incident-high", 7)
    assert added["resolve_sla_minutes"] == 70

    response = await client.patch(
        f"/sla-policies/{response.json()['id']}", json={"start_minutes": 9}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    edited = await _incident(client, admin_headers)
    assert (edited["sla_policy_name"], edited["start_sla_minutes"]) == ("incident-high", 9)

    # Another process (the CLI's import): its own session, nothing of this process told.
    async with unit_of_work(app_context.sessions) as session:
        await _import(session, app_context, ENTERPRISE_ONLY, mode="replace")
    removed = await _incident(client, admin_headers)
    assert removed["sla_policy_name"] is None
    assert removed["start_sla_minutes"] == before["start_sla_minutes"]
    enterprise = await _incident(client, admin_headers, customer_tier="ENTERPRISE")
    assert enterprise["sla_policy_name"] is not None
    assert (enterprise["start_sla_minutes"], enterprise["resolve_sla_minutes"]) == (45, 180)


async def test_a_cached_catalog_is_used_while_the_revision_stays(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    cache = app_context.sla_policies
    await _incident(client, admin_headers)
    async with unit_of_work(app_context.sessions) as session:
        first = await cache.get(session)
    async with unit_of_work(app_context.sessions) as session:
        assert await cache.get(session) is first
    async with unit_of_work(app_context.sessions) as session:
        await _import(session, app_context, ENTERPRISE_ONLY)
    async with unit_of_work(app_context.sessions) as session:
        assert await cache.get(session) is not first


async def test_a_change_rolled_back_is_never_cached(app_context: AppContext) -> None:
    # The same revision is reached again by a committed change (the clock stands still, so
    # its version is the same too): only what was committed may be served under it.
    cache = sla_service.CatalogCache()
    async with app_context.sessions() as session:
        await _import(session, app_context, ENTERPRISE_ONLY)
        seen = await cache.get(session)  # this unit of work's own, uncommitted view
        assert seen.resolve("INCIDENT", "HIGH", "ENTERPRISE").start_minutes == 45
        await session.rollback()
    async with unit_of_work(app_context.sessions) as session:
        await _import(session, app_context, ENTERPRISE_ONLY.replace("45", "50"))
    async with unit_of_work(app_context.sessions) as session:
        catalog = await cache.get(session)
    assert catalog.resolve("INCIDENT", "HIGH", "ENTERPRISE").start_minutes == 50


async def _import(
    session: AsyncSession, app_context: AppContext, text: str, **options: Any
) -> None:
    """Apply a configuration as the CLI's import does: its own session, this process's
    cache told nothing."""
    await sla_config_service.apply_config(
        session,
        Principal.system("cli"),
        sla_config_service.parse(text),
        app_context.clock.now(),
        **options,
    )
