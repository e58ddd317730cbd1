"""Request rate limits: per principal for reads and writes, per address for logins, the
headers on every limited answer, 429 in the envelope, ingestion exempt; counters in memory,
in Redis shared by every process, and in memory again while Redis is away."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog.testing

from opsflow.app import create_app
from opsflow.auth.ratelimit import Counters, RateLimiter
from opsflow.clock import SettableClock
from opsflow.composition import build_context
from opsflow.config import Settings
from tests.conftest import assert_error, make_settings
from tests.factories import ADMIN_PASSWORD, bearer, client_token, create_api_client, login
from tests.processes import free_port

REDIS_URL = os.environ.get("OPSFLOW_TEST_REDIS_URL")
READS, WRITES, LOGINS = 6, 3, 4


def limited_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(
        database_url,
        data_dir=tmp_path / "data",
        rate_limit_enabled=True,
        rate_limit_per_minute=READS,
        rate_limit_writes_per_minute=WRITES,
        rate_limit_login_per_minute=LOGINS,
        **overrides,
    )


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return limited_settings(database_url, tmp_path)


def _quota(response: httpx.Response) -> tuple[int, int, int]:
    h = response.headers
    return int(h["X-RateLimit-Limit"]), int(h["X-RateLimit-Remaining"]), int(h["X-RateLimit-Reset"])


async def test_reads_exhausted_answer_429_with_headers_in_the_envelope(
    client: httpx.AsyncClient, clock: SettableClock
) -> None:
    headers = await login(client, "admin", ADMIN_PASSWORD)  # a login costs no read
    window_end = (int(clock.now().timestamp()) // 60 + 1) * 60
    for used in range(1, READS + 1):
        response = await client.get("/users/me", headers=headers)
        assert response.status_code == 200, response.text
        assert _quota(response) == (READS, READS - used, window_end)
    refused = await client.get("/users/me", headers=headers)
    error = assert_error(refused, 429, "RATE_LIMITED")
    retry = window_end - int(clock.now().timestamp())
    assert refused.headers["Retry-After"] == str(retry)
    assert error["retry_after_seconds"] == retry
    assert _quota(refused) == (READS, 0, window_end)
    # Writes count apart, and the next window starts afresh.
    write = await client.post("/tasks", json={"title": "t"}, headers=headers)
    assert write.status_code == 201, write.text
    clock.advance(seconds=60)
    assert (await client.get("/users/me", headers=headers)).status_code == 200


async def test_writes_are_stricter_and_counted_per_principal(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    creds = await create_api_client(client, admin_headers, ["tasks:read", "tasks:write"])
    robot = bearer((await client_token(client, creds)).json()["access_token"])
    for _ in range(WRITES - 1):  # creating the client was the admin's first write
        created = await client.post("/tasks", json={"title": "t"}, headers=admin_headers)
        assert created.status_code == 201, created.text
    assert_error(
        await client.post("/tasks", json={"title": "t"}, headers=admin_headers),
        429,
        "RATE_LIMITED",
    )
    # The API client has its own quota.
    own = await client.post("/tasks", json={"title": "robot"}, headers=robot)
    assert own.status_code == 201, own.text
    assert _quota(own)[:2] == (WRITES, WRITES - 1)
    # Reads still pass for the admin.
    assert (await client.get("/tasks", headers=admin_headers)).status_code == 200


async def test_login_is_limited_per_address(client: httpx.AsyncClient) -> None:
    for _ in range(LOGINS):
        answer = await client.post(
            "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert answer.status_code == 200, answer.text
        assert _quota(answer)[0] == LOGINS
    refused = await client.post(
        "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert_error(refused, 429, "RATE_LIMITED")
    assert int(refused.headers["Retry-After"]) >= 1
    token = await client.post(
        "/auth/token",
        data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
    )
    assert_error(token, 429, "RATE_LIMITED")


async def test_ingestion_is_never_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    creds = await create_api_client(client, admin_headers, ["tickets:ingest"])
    robot = bearer((await client_token(client, creds)).json()["access_token"])
    for index in range(WRITES * 3):
        item = {"external_id": f"RL-{index}", "title": "From elsewhere"}
        answer = await client.post("/tickets", json={"tickets": [item]}, headers=robot)
        assert answer.status_code == 200, answer.text
        assert "X-RateLimit-Limit" not in answer.headers


async def test_unauthenticated_and_system_answers_carry_no_quota(
    client: httpx.AsyncClient,
) -> None:
    assert "X-RateLimit-Limit" not in (await client.get("/health")).headers
    assert_error(await client.get("/users/me"), 401, "UNAUTHORIZED")


async def _limiter(redis_url: str | None, clock: SettableClock) -> RateLimiter:
    return RateLimiter(
        Counters(redis_url, clock),
        clock,
        enabled=True,
        reads_per_minute=4,
        writes_per_minute=2,
        login_per_minute=2,
    )


@pytest.mark.redis_fanout
@pytest.mark.skipif(REDIS_URL is None, reason="needs OPSFLOW_TEST_REDIS_URL")
async def test_two_processes_share_counters_in_redis(clock: SettableClock) -> None:
    # Two limiters stand for two processes: each has its own memory, Redis is shared.
    clock.set(clock.now().replace(year=2031))  # a window no other test run has used
    identity = f"user:{os.getpid()}-{id(clock)}"
    first, second = await _limiter(REDIS_URL, clock), await _limiter(REDIS_URL, clock)
    assert first.counters.kind == "redis"
    quotas = [await (first if n % 2 else second).hit(first.reads, identity) for n in range(5)]
    assert [q.allowed for q in quotas] == [True, True, True, True, False]
    assert [q.remaining for q in quotas] == [3, 2, 1, 0, 0]


async def test_redis_down_falls_back_to_memory(
    database_url: str, tmp_path: Path, clock: SettableClock
) -> None:
    """Nothing listens at the configured Redis: requests are still served (the limits fail
    open to this process's own counters, which keep limiting), and a warning says so."""
    settings = limited_settings(
        database_url, tmp_path, celery_broker_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    context = build_context(settings, clock)
    app = create_app(settings, context=context)
    try:
        with structlog.testing.capture_logs() as logs:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://testserver/api/v1"
                ) as client:
                    assert context.rate_limiter.counters.kind == "redis"
                    headers = await login(client, "admin", ADMIN_PASSWORD)
                    for used in range(1, READS + 1):
                        response = await client.get("/users/me", headers=headers)
                        assert response.status_code == 200, response.text
                        assert _quota(response)[1] == READS - used
                    refused = await client.get("/users/me", headers=headers)
                    assert_error(refused, 429, "RATE_LIMITED")
    finally:
        await context.close()
    assert any(log["event"] == "rate_limit_storage_unavailable" for log in logs)


@pytest.fixture
async def disabled_client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(database_url, data_dir=tmp_path / "data")
    context = build_context(settings, SettableClock())
    app = create_app(settings, context=context)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver/api/v1"
            ) as client:
                yield client
    finally:
        await context.close()


async def test_switched_off_limits_count_nothing(disabled_client: httpx.AsyncClient) -> None:
    headers = await login(disabled_client, "admin", ADMIN_PASSWORD)
    for _ in range(READS * 2):
        response = await disabled_client.get("/users/me", headers=headers)
        assert response.status_code == 200
        assert "X-RateLimit-Limit" not in response.headers


async def test_a_request_counts_once_however_many_of_its_dependencies_authenticate(
    client: httpx.AsyncClient,
) -> None:
    """`POST /uploads` checks a permission and takes `Idempotency-Key` (which reads the
    caller too): the caller is authenticated, and the request counted, once."""
    headers = await login(client, "admin", ADMIN_PASSWORD)
    task = await client.post("/tasks", json={"title": "t"}, headers=headers)
    assert _quota(task)[:2] == (WRITES, WRITES - 1)
    data = b"x" * 10
    body = {
        "task_id": task.json()["id"],
        "filename": "a.log",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "chunk_size": 5 * 1024 * 1024,
    }
    upload = await client.post("/uploads", json=body, headers=headers)
    assert upload.status_code == 201, upload.text
    assert _quota(upload)[:2] == (WRITES, WRITES - 2)
