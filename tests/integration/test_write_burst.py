"""A concurrent burst of writes through `opsflow serve --workers 2` on PostgreSQL.

The request path takes shortcuts (remembered token signatures, a unit of work that does not
re-read what it loaded, reads in autocommit, the audit chain's lock taken late); none may
cost a guarantee: afterwards the audit chain verifies, and every acknowledged task has its
two clocks, its audit row and its outbox event.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from opsflow.db import create_engine
from tests.factories import ADMIN_PASSWORD
from tests.processes import opsflow_serve_workers

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CLIENTS = 16
TASKS_EACH = 6


async def _burst(base: str, token: str) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"}
    created: list[str] = []

    async def client(number: int) -> None:
        # One connection per client: the kernel spreads them over both workers.
        async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=60) as http:
            for index in range(TASKS_EACH):
                answer = await http.post(
                    "/tasks",
                    json={
                        "title": f"burst {number}-{index}",
                        "task_type": "INCIDENT" if index % 2 else "TASK",
                        "priority": "HIGH",
                    },
                    headers=headers,
                )
                assert answer.status_code == 201, answer.text
                created.append(answer.json()["id"])
                if index % 3 == 0:
                    started = await http.patch(f"/tasks/{created[-1]}/start", headers=headers)
                    assert started.status_code == 200, started.text

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return created


async def _counts(database_url: str, ids: list[str]) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT"
                        " (SELECT count(*) FROM sla_clocks WHERE task_id::text = ANY(:ids)),"
                        " (SELECT count(*) FROM audit_logs WHERE action = 'TASK_CREATED'"
                        "   AND entity_id::text = ANY(:ids)),"
                        " (SELECT count(*) FROM outbox_events WHERE event_type = 'task.created'"
                        "   AND aggregate_id::text = ANY(:ids))"
                    ),
                    {"ids": ids},
                )
            ).one()
    finally:
        await engine.dispose()
    return {"clocks": row[0], "audit": row[1], "outbox": row[2]}


async def test_a_burst_over_two_workers_keeps_every_guarantee(
    database_url: str, tmp_path: Path
) -> None:
    with opsflow_serve_workers(tmp_path, database_url, ADMIN_PASSWORD, 2) as base:
        async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=60) as http:
            login = await http.post(
                "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
            token = login.json()["access_token"]
            created = await _burst(base, token)
            verify = await http.get(
                "/audit-logs/verify", headers={"Authorization": f"Bearer {token}"}
            )
    assert len(created) == len(set(created)) == CLIENTS * TASKS_EACH
    assert verify.status_code == 200
    assert verify.json()["valid"] is True, verify.json()
    counts = await _counts(database_url, created)
    assert counts == {"clocks": 2 * len(created), "audit": len(created), "outbox": len(created)}
