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


OUT_OF_RANGE = [
    # Year 10000 once converted to UTC: used to overflow into a 500.
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    "1899-12-31T23:59:59Z",
    "9000-01-01T00:00:00Z",
]


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/tasks", "created_after"),
        ("/tasks", "created_before"),
        ("/audit-logs", "start_date"),
        ("/audit-logs", "end_date"),
        ("/audit-logs/export", "start_date"),
        ("/audit-logs/export", "end_date"),
        ("/sla-events", "start_date"),
        ("/sla-events", "end_date"),
    ],
)
async def test_instants_out_of_range_are_a_400_before_anything_is_sent(
    client: httpx.AsyncClient, admin_headers: dict[str, str], path: str, param: str, value: str
) -> None:
    """The export too answers the envelope, not a 200 whose download then breaks off."""
    response = await client.get(path, params={param: value}, headers=admin_headers)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert [d["field"] for d in error["details"]] == [param]
    assert "1900" in error["details"][0]["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/maintenance-windows", {"name": "w", "starts_at": "9999-12-31T23:59:59-14:00"}),
        ("/sla-policies/simulate", {"start": "9999-12-31T23:59:59-14:00"}),
    ],
)
async def test_instants_in_bodies_have_the_same_bounds(
    client: httpx.AsyncClient, admin_headers: dict[str, str], path: str, body: dict[str, str]
) -> None:
    body = {**body, "ends_at": "2030-01-01T00:00:00Z"} if "starts_at" in body else body
    response = await client.post(path, json=body, headers=admin_headers)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert any("1900" in d["message"] for d in error["details"]), error


async def test_the_last_instants_in_range_are_accepted(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for value in ("8999-12-31T23:59:59.999999-14:00", "1900-01-01T00:00:00+14:00"):
        for path, param in (("/tasks", "created_after"), ("/audit-logs/export", "end_date")):
            response = await client.get(path, params={param: value}, headers=admin_headers)
            assert response.status_code == 200, response.text


@pytest.mark.parametrize("level", ["2147483648", "0", "-1", "1000000"])
async def test_escalation_level_filter_is_bounded(
    client: httpx.AsyncClient, admin_headers: dict[str, str], level: str
) -> None:
    response = await client.get(
        "/escalation-events", params={"level": level}, headers=admin_headers
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert [d["field"] for d in error["details"]] == ["level"]
    fine = await client.get("/escalation-events", params={"level": "1"}, headers=admin_headers)
    assert fine.status_code == 200, fine.text
