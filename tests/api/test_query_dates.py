"""Date filters must say their time zone: a naive instant is ambiguous, so it is a 400."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import assert_error


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/tasks", "created_after"),
        ("/tasks", "created_before"),
        ("/audit-logs", "start_date"),
        ("/audit-logs/export", "end_date"),
        ("/sla-events", "start_date"),
        ("/sla-events", "end_date"),
    ],
)
async def test_naive_instants_are_refused_and_aware_ones_accepted(
    client: httpx.AsyncClient, admin_headers: dict[str, str], path: str, param: str
) -> None:
    naive = await client.get(path, params={param: "2026-01-27T10:00:00"}, headers=admin_headers)
    error = assert_error(naive, 400, "VALIDATION_ERROR")
    assert [d["field"] for d in error["details"]] == [param]
    aware = await client.get(path, params={param: "2026-01-27T10:00:00Z"}, headers=admin_headers)
    assert aware.status_code == 200, aware.text
