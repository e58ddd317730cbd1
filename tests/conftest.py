"""Shared fixtures.

The suite runs on SQLite by default and on PostgreSQL when OPSFLOW_TEST_DATABASE_URL is
set. The schema is always built by the real Alembic migrations: once per run, then each
test gets a clean database (a copy of the migrated SQLite file, or truncated PostgreSQL
tables in a database created for this run).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text
from sqlalchemy.engine import make_url

from opsflow import schema
from opsflow.app import create_app
from opsflow.clock import SettableClock
from opsflow.composition import build_context
from opsflow.config import Settings
from opsflow.context import AppContext
from opsflow.db import Base, create_engine
from tests.factories import ADMIN_PASSWORD, T0, login
from tests.sinks import HttpSink, SmtpSink, free_port

# CI (`.ci/run` sets OPSFLOW_CI=1) replays the same property examples every run, so a
# landing never depends on the luck of a random draw; local runs keep exploring new ones.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("OPSFLOW_CI") == "1":
    hypothesis_settings.load_profile("ci")


def _redis_database_per_worker() -> None:
    """Under pytest-xdist (`-n`), each worker process takes its own Redis database
    (the configured one minus the worker's number), so one worker flushing its broker
    database never empties another's. Set before any test module reads the variable."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    url = os.environ.get("OPSFLOW_TEST_REDIS_URL")
    if not url or not worker.startswith("gw"):
        return
    base, _, database = url.rpartition("/")
    number = int(database) if database.isdigit() else 0
    index = int(worker[2:])
    number = number - index if number >= index else number + index
    os.environ["OPSFLOW_TEST_REDIS_URL"] = f"{base}/{number}"


_redis_database_per_worker()

PG_URL = os.environ.get("OPSFLOW_TEST_DATABASE_URL")
REQUIRE_SERVICES = os.environ.get("OPSFLOW_REQUIRE_SERVICES") == "1"


__all__ = ["T0", "assert_error", "make_settings"]


def _async_url(url: str) -> str:
    return Settings(database_url=url).database_url


@dataclass
class DatabaseTemplate:
    kind: str  # "sqlite" | "postgresql"
    url: str
    template_path: Path | None = None


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseTemplate]:
    if PG_URL:
        admin_url = make_url(_async_url(PG_URL))
        name = f"opsflow_test_{uuid.uuid4().hex[:10]}"
        _pg_admin(admin_url.render_as_string(hide_password=False), f'CREATE DATABASE "{name}"')
        url = admin_url.set(database=name).render_as_string(hide_password=False)
        schema.upgrade(url)
        yield DatabaseTemplate("postgresql", url)
        _pg_admin(
            admin_url.render_as_string(hide_password=False),
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        )
        return
    folder = tmp_path_factory.mktemp("db")
    path = folder / "template.db"
    schema.upgrade(f"sqlite+aiosqlite:///{path}")
    yield DatabaseTemplate("sqlite", f"sqlite+aiosqlite:///{path}", template_path=path)


def _pg_admin(url: str, statement: str) -> None:
    import asyncio

    async def run() -> None:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(run())


@pytest.fixture
async def database_url(database_template: DatabaseTemplate, tmp_path: Path) -> str:
    """A clean, fully migrated database for one test."""
    if database_template.kind == "sqlite":
        assert database_template.template_path is not None
        target = tmp_path / "opsflow.db"
        shutil.copyfile(database_template.template_path, target)
        return f"sqlite+aiosqlite:///{target}"
    engine = create_engine(database_template.url)
    try:
        async with engine.begin() as connection:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await connection.execute(text(f"TRUNCATE {tables} CASCADE"))
    finally:
        await engine.dispose()
    return database_template.url


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "app_env": "test",
        # a test process starts many applications: freezing each one's heap would keep it
        "gc_tuning": False,
        "jwt_secret_key": "test-secret-key-that-is-long-enough-0123456789",
        "password_time_cost": 1,
        "password_memory_cost_kib": 1024,
        "auto_migrate": False,
        "admin_password": ADMIN_PASSWORD,
        "admin_email": "admin@example.com",
        "log_level": "WARNING",
        # Tests move the clock by hours; keep their tokens alive across that.
        "access_token_expire_minutes": 1440,
        # Tests drive the SLA engine themselves, with the settable clock.
        "engine_enabled": False,
        # Request rate limits stay out of the way; their own tests switch them on.
        "rate_limit_enabled": False,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Files (attachments, the mail outbox) go to the test's own folder.
    return make_settings(database_url, data_dir=tmp_path / "data")


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
async def app_context(settings: Settings, clock: SettableClock) -> AsyncIterator[AppContext]:
    context = build_context(settings, clock)
    yield context
    await context.close()


@pytest.fixture
async def app(settings: Settings, app_context: AppContext) -> AsyncIterator[Any]:
    application = create_app(settings, context=app_context)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver/api/v1") as c:
        yield c


ENVELOPE_KEYS = {"code", "message", "timestamp", "request_id"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the error envelope with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) >= ENVELOPE_KEYS, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["timestamp"].endswith("Z")
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return dict(error)


@pytest.fixture
async def admin_headers(client: httpx.AsyncClient) -> dict[str, str]:
    return await login(client, "admin", ADMIN_PASSWORD)


CHAOS = os.environ.get("OPSFLOW_CHAOS") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The chaos suite (tests/chaos) restarts servers of its own for minutes: it runs once,
    # when OPSFLOW_CHAOS=1 (CI sets it for the PostgreSQL run only).
    if not CHAOS:
        skip_chaos = pytest.mark.skip(reason="chaos suite: set OPSFLOW_CHAOS=1")
        for item in items:
            if item.get_closest_marker("chaos") is not None:
                item.add_marker(skip_chaos)
    if PG_URL or REQUIRE_SERVICES:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set OPSFLOW_TEST_DATABASE_URL")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE_SERVICES and not PG_URL:
        raise pytest.UsageError(
            "OPSFLOW_REQUIRE_SERVICES=1 but OPSFLOW_TEST_DATABASE_URL is not set"
        )


# Real delivery destinations on loopback (see tests/sinks.py), for tests that read what a
# person receives.


def _smtp_server(*, with_auth: bool) -> Iterator[tuple[SmtpSink, int]]:
    sink = SmtpSink()
    port = free_port()
    auth: dict[str, Any] = (
        {"authenticator": sink.authenticate, "auth_require_tls": False} if with_auth else {}
    )
    controller = Controller(sink, hostname="127.0.0.1", port=port, **auth)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpSink, int]]:
    yield from _smtp_server(with_auth=False)


@pytest.fixture
def smtp_with_auth() -> Iterator[tuple[SmtpSink, int]]:
    """An SMTP sink that offers AUTH (opsflow / s3cret) without TLS."""
    yield from _smtp_server(with_auth=True)


@pytest.fixture
async def slack() -> AsyncIterator[HttpSink]:
    sink = HttpSink()
    await sink.start()
    try:
        yield sink
    finally:
        await sink.stop()


@pytest.fixture
async def hooks() -> AsyncIterator[HttpSink]:
    sink = HttpSink()
    await sink.start()
    try:
        yield sink
    finally:
        await sink.stop()


def delivery_settings(
    database_url: str, smtp: tuple[SmtpSink, int], slack: HttpSink, **overrides: Any
) -> Settings:
    """Settings that send e-mail to the `smtp` sink and Slack posts to the `slack` sink."""
    return make_settings(
        database_url,
        smtp_host="127.0.0.1",
        smtp_port=smtp[1],
        smtp_starttls=False,
        slack_webhook_url=f"{slack.url}/services/T000/B000/XXXX",
        **overrides,
    )
