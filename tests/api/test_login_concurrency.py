"""The login throttle and the password hasher under concurrent requests.

Every attempt is counted before its password is hashed, so a burst of parallel requests
cannot slip past the limit; hashes run in a bounded number of threads; and no database
transaction (hence no connection, and on SQLite no write lock) stays open while one runs.
Runs on SQLite and, with OPSFLOW_TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from opsflow.app import create_app
from opsflow.clock import SettableClock
from opsflow.composition import build_context
from opsflow.context import AppContext
from tests.conftest import assert_error, make_settings
from tests.factories import ADMIN_PASSWORD, USER_PASSWORD, login, make_user


class HashSpy:
    """Stands in for the argon2 hasher: counts hashes, the most that ran at once, and how
    many database connections were checked out while each ran."""

    def __init__(self, inner: Any, context: AppContext) -> None:
        self.inner = inner
        self.pool = context.engine.pool
        self.calls = 0
        self.running = 0
        self.most_at_once = 0
        self.connections_held: list[int] = []
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()

    def _enter(self) -> None:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.connections_held.append(self.pool.checkedout())  # type: ignore[attr-defined]
        if self.gate is not None:
            # A safety net so a broken implementation fails instead of hanging.
            assert self.gate.wait(timeout=60), "the gate was never opened"

    def _leave(self) -> None:
        with self._lock:
            self.running -= 1

    def hash(self, password: str) -> str:
        self._enter()
        try:
            return str(self.inner.hash(password))
        finally:
            self._leave()

    def verify(self, hashed: str, password: str) -> bool:
        self._enter()
        try:
            return bool(self.inner.verify(hashed, password))
        finally:
            self._leave()

    def check_needs_rehash(self, hashed: str) -> bool:
        return bool(self.inner.check_needs_rehash(hashed))


def spy_on(context: AppContext) -> HashSpy:
    spy = HashSpy(context.passwords._hasher, context)
    context.passwords._hasher = spy  # type: ignore[assignment]
    return spy


async def _login(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    return await client.post("/auth/login", json={"username": name, "password": password})


def _assert_refusals(responses: list[httpx.Response]) -> None:
    """Every answer is a refusal in the envelope: 401, 429 or 503, never a 500."""
    for response in responses:
        assert response.status_code in (401, 429, 503), response.text
        if response.status_code == 429:
            assert_error(response, 429, "RATE_LIMITED")
            assert int(response.headers["Retry-After"]) >= 1
        elif response.status_code == 503:
            error = assert_error(response, 503, "SERVICE_UNAVAILABLE")
            assert int(response.headers["Retry-After"]) >= 1
            assert error["retry_after_seconds"] >= 1


async def test_parallel_wrong_passwords_for_one_user_hash_at_most_the_limit(
    client: httpx.AsyncClient, app_context: AppContext
) -> None:
    spy = spy_on(app_context)
    responses = await asyncio.gather(*(_login(client, "admin", "wrong-pass") for _ in range(40)))
    _assert_refusals(list(responses))
    assert spy.calls <= 10
    assert sum(r.status_code == 401 for r in responses) <= 10
    assert sum(r.status_code == 429 for r in responses) >= 30
    # The real password is refused too now: the account is locked for the window.
    assert_error(await _login(client, "admin", ADMIN_PASSWORD), 429, "RATE_LIMITED")


async def test_parallel_attempts_through_username_and_email_share_the_account_limit(
    client: httpx.AsyncClient, app_context: AppContext
) -> None:
    spy = spy_on(app_context)
    names = ["admin", "admin@example.com", "ADMIN", "Admin@Example.com"] * 10
    responses = await asyncio.gather(*(_login(client, name, "wrong-pass") for name in names))
    _assert_refusals(list(responses))
    assert spy.calls <= 10


async def test_parallel_logins_from_one_address_hash_at_most_the_address_limit(
    client: httpx.AsyncClient, app_context: AppContext, admin_headers: dict[str, str]
) -> None:
    spy = spy_on(app_context)
    burst = asyncio.gather(
        *(_login(client, f"nobody-{index}", "wrong-pass") for index in range(200))
    )
    # An unrelated write in the middle of the burst goes through.
    team = await client.post("/teams", json={"name": "during-burst"}, headers=admin_headers)
    responses = await burst
    assert team.status_code == 201, team.text
    _assert_refusals(list(responses))
    assert spy.calls <= 50
    # A 503 (every hasher busy) gives its attempt back; only hashed attempts answer 401.
    assert sum(r.status_code == 401 for r in responses) <= 50
    assert sum(r.status_code in (429, 503) for r in responses) >= 150


async def test_successful_logins_in_parallel_are_not_counted_as_failures(
    client: httpx.AsyncClient, app_context: AppContext
) -> None:
    responses = await asyncio.gather(*(_login(client, "admin", ADMIN_PASSWORD) for _ in range(9)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    # The nine successes released their places: ten failures are still allowed.
    for _ in range(10):
        assert_error(await _login(client, "admin", "wrong-pass"), 401, "UNAUTHORIZED")
    assert_error(await _login(client, "admin", "wrong-pass"), 429, "RATE_LIMITED")


@pytest.fixture
async def narrow_client(
    database_url: str, clock: SettableClock
) -> AsyncIterator[tuple[httpx.AsyncClient, AppContext]]:
    """An app that hashes one password at a time and lets nobody queue for the hasher."""
    settings = make_settings(database_url, password_hash_concurrency=1, password_hash_queue=0)
    context = build_context(settings, clock)
    application = create_app(settings, context=context)
    try:
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver/api/v1"
            ) as http:
                yield http, context
    finally:
        await context.close()


async def test_hashes_beyond_the_bound_are_refused_with_503(
    narrow_client: tuple[httpx.AsyncClient, AppContext],
) -> None:
    client, context = narrow_client
    spy = spy_on(context)
    spy.gate = threading.Event()
    tasks = [asyncio.ensure_future(_login(client, f"nobody-{i}", "wrong-pass")) for i in range(20)]
    done: list[httpx.Response] = []
    try:
        # One login holds the only hashing slot (the gate keeps it there); every other
        # one must be answered without waiting for it.
        for finished in asyncio.as_completed(tasks):
            done.append(await finished)
            if len(done) == len(tasks) - 1:
                spy.gate.set()
    finally:
        spy.gate.set()
    _assert_refusals(done)
    assert spy.most_at_once == 1
    assert sum(r.status_code == 503 for r in done) == 19
    assert sum(r.status_code == 401 for r in done) == 1
    # Refused before hashing, so not counted as failed attempts: the admin still gets in.
    assert (await _login(client, "admin", ADMIN_PASSWORD)).status_code == 200


async def test_no_transaction_is_open_while_a_password_is_hashed(
    client: httpx.AsyncClient, app_context: AppContext, admin_headers: dict[str, str]
) -> None:
    """Login, token grants, registration, password changes and API-client secrets hash
    with no connection checked out (on SQLite: without the write lock)."""
    dev = await make_user(client, admin_headers, "developer")
    spy = spy_on(app_context)

    assert (await _login(client, dev.username, "wrong-pass")).status_code == 401
    assert (await _login(client, "nobody", "wrong-pass")).status_code == 401
    assert (await _login(client, dev.username, USER_PASSWORD)).status_code == 200
    token = await client.post(
        "/auth/token",
        data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
    )
    assert token.status_code == 200, token.text
    created = await client.post(
        "/api-clients", json={"name": "robot", "scopes": ["tasks:read"]}, headers=admin_headers
    )
    assert created.status_code == 201, created.text
    grant = await client.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": created.json()["client_id"],
            "client_secret": created.json()["client_secret"],
        },
    )
    assert grant.status_code == 200, grant.text
    registered = await client.post(
        "/auth/register",
        json={
            "email": "new.person@example.com",
            "username": "new.person",
            "password": USER_PASSWORD,
        },
        headers={**admin_headers, "Idempotency-Key": "register-new-person"},
    )
    assert registered.status_code == 201, registered.text
    own = await client.patch(
        f"/users/{dev.id}",
        json={"password": "Changed-Pass-123", "current_password": USER_PASSWORD},
        headers=dev.headers,
    )
    assert own.status_code == 200, own.text
    wrong_current = await client.patch(
        f"/users/{registered.json()['id']}",
        json={"password": "Changed-Pass-123", "current_password": "Not-It-At-All"},
        headers=await login(client, "new.person", USER_PASSWORD),
    )
    assert_error(wrong_current, 400, "VALIDATION_ERROR")
    reset = await client.patch(
        f"/users/{dev.id}", json={"password": "Reset-By-Admin-1"}, headers=admin_headers
    )
    assert reset.status_code == 200, reset.text

    assert spy.calls >= 10
    assert spy.connections_held == [0] * spy.calls


@pytest.fixture
async def impatient_client(
    database_url: str, clock: SettableClock
) -> AsyncIterator[httpx.AsyncClient]:
    """An embedded-mode app whose writers wait only briefly for the SQLite write lock."""
    if not database_url.startswith("sqlite"):
        pytest.skip("the write lock is SQLite's")
    settings = make_settings(database_url, sqlite_busy_timeout_ms=50)
    context = build_context(settings, clock)
    application = create_app(settings, context=context)
    try:
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver/api/v1"
            ) as http:
                yield http
    finally:
        await context.close()


async def test_a_locked_sqlite_database_answers_503_not_500(
    impatient_client: httpx.AsyncClient, database_url: str
) -> None:
    client = impatient_client
    admin = await login(client, "admin", ADMIN_PASSWORD)
    path = database_url.split(":///", 1)[1]
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        created = await client.post("/teams", json={"name": "blocked"}, headers=admin)
        error = assert_error(created, 503, "SERVICE_UNAVAILABLE")
        assert created.headers["Retry-After"] == "1"
        assert error["retry_after_seconds"] == 1
        # A login needs to write its session: refused the same way, and not counted.
        assert_error(await _login(client, "admin", ADMIN_PASSWORD), 503, "SERVICE_UNAVAILABLE")
        # Reads and wrong passwords need no write lock.
        assert (await client.get("/teams", headers=admin)).status_code == 200
        assert_error(await _login(client, "admin", "wrong-pass"), 401, "UNAUTHORIZED")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    created = await client.post("/teams", json={"name": "unblocked"}, headers=admin)
    assert created.status_code == 201, created.text
    assert (await _login(client, "admin", ADMIN_PASSWORD)).status_code == 200
