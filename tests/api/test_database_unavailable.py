"""A database that restarts or refuses connections answers 503 in the envelope, never 500.

The errors are the ones asyncpg raises through SQLAlchemy when the server goes away (the
chaos suite, tests/chaos, produces them for real by restarting PostgreSQL); here they are
raised by a route added to the app, to pin the mapping on every database backend.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from opsflow.deps import SessionDep
from tests.conftest import assert_error


class _DriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "invalidated", "status", "code"),
    [
        ("57P03", False, 503, "SERVICE_UNAVAILABLE"),  # not yet accepting connections
        ("57P01", False, 503, "SERVICE_UNAVAILABLE"),  # terminated by an administrator
        ("08006", False, 503, "SERVICE_UNAVAILABLE"),  # connection failure
        (None, True, 503, "SERVICE_UNAVAILABLE"),  # closed under a running statement
        ("22012", False, 500, "INTERNAL_ERROR"),  # division by zero: a bug, not an outage
    ],
)
async def test_database_errors_map_to_503_when_the_server_is_away(
    app: Any,
    client: httpx.AsyncClient,
    sqlstate: str | None,
    invalidated: bool,
    status: int,
    code: str,
) -> None:
    async def failing() -> None:
        raise DBAPIError(
            "SELECT 1",
            {},
            _DriverError("server gone", sqlstate),
            connection_invalidated=invalidated,
        )

    app.add_api_route("/api/v1/_database-failure", failing, methods=["GET"])
    response = await client.get("/_database-failure")
    assert_error(response, status, code)
    if status == 503:
        assert response.headers["retry-after"] == "5"


@pytest.mark.postgres
async def test_a_transaction_the_server_rolled_back_answers_503_to_retry(
    app: Any, client: httpx.AsyncClient
) -> None:
    """A deadlock between two writers (here raised for real by PostgreSQL with its SQLSTATE)
    rolls the request back whole: 503 with a short Retry-After, never a 500."""

    async def deadlocked(session: SessionDep) -> None:
        await session.execute(
            text("DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$")
        )

    app.add_api_route("/api/v1/_deadlock", deadlocked, methods=["POST"])
    response = await client.post("/_deadlock")
    assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert response.headers["retry-after"] == "1"
