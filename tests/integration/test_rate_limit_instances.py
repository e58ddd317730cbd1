"""Two `opsflow serve` instances on one Redis share a principal's rate limit: half the limit
through each exhausts it, and the next request, on either instance, is answered 429."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import assert_error
from tests.factories import login, make_user
from tests.processes import opsflow_serve, redis_server

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("redis-server") is None and os.environ.get("OPSFLOW_REQUIRE_SERVICES") != "1",
        reason="needs redis-server on the PATH (a throw-away one is started)",
    ),
]

ADMIN_PASSWORD = "Limits-Admin-Pass-1"
LIMIT = 10
# Windows are fixed minutes: a run that straddles two is told apart by X-RateLimit-Reset and
# tried again with a fresh user (two boundaries in a row cannot fall inside a few requests).
ATTEMPTS = 3


async def _spread(one: httpx.AsyncClient, two: httpx.AsyncClient) -> bool:
    """LIMIT reads spread over both instances, then one more on each; False when a window
    boundary fell in between (nothing is concluded then)."""
    admin = await login(one, "admin", ADMIN_PASSWORD)
    user = await make_user(one, admin, "developer")
    answers = [
        await (one if n % 2 else two).get("/users/me", headers=user.headers) for n in range(LIMIT)
    ]
    refused = [await c.get("/users/me", headers=user.headers) for c in (one, two)]
    if len({r.headers["X-RateLimit-Reset"] for r in [*answers, *refused]}) != 1:
        return False
    assert [r.status_code for r in answers] == [200] * LIMIT
    assert [int(r.headers["X-RateLimit-Remaining"]) for r in answers] == list(
        range(LIMIT - 1, -1, -1)
    )
    for response in refused:
        assert_error(response, 429, "RATE_LIMITED")
        assert int(response.headers["Retry-After"]) >= 1
        assert response.headers["X-RateLimit-Remaining"] == "0"
    return True


async def test_two_instances_share_one_limit(database_url: str, tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server(tmp_path))
        env = {
            "REDIS_URL": redis.url(0),
            "OPSFLOW_RATE_LIMIT_ENABLED": "true",
            "OPSFLOW_RATE_LIMIT_PER_MINUTE": str(LIMIT),
            "OPSFLOW_RATE_LIMIT_WRITES_PER_MINUTE": "1000",
            "OPSFLOW_RATE_LIMIT_LOGIN_PER_MINUTE": "1000",
        }
        urls = [
            stack.enter_context(
                opsflow_serve(
                    tmp_path, database_url, ADMIN_PASSWORD, name=f"serve-{n}", no_engine=True, **env
                )
            )
            for n in (1, 2)
        ]
        async with (
            httpx.AsyncClient(base_url=f"{urls[0]}/api/v1", timeout=30) as one,
            httpx.AsyncClient(base_url=f"{urls[1]}/api/v1", timeout=30) as two,
        ):
            for _ in range(ATTEMPTS):
                if await _spread(one, two):
                    return
        pytest.fail("every attempt straddled a window boundary")
