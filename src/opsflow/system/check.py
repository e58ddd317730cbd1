"""`opsflow check`: is this installation ready to serve?

Each check answers ``ok``, ``warn`` (works, but worth a look), ``skip`` (not configured)
or ``fail``; the command exits non-zero when any check fails. The checks only read: the
database is never migrated, created or written to, a missing SQLite file is reported
rather than made, and no e-mail is sent (the SMTP check ends after EHLO, STARTTLS and
AUTH). Nothing printed contains a password, secret or full URL with credentials.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

import aiosmtplib
from alembic.runtime.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy.engine import Connection, make_url

from opsflow import schema
from opsflow.config import ConfigError, Settings, environment_warnings
from opsflow.db import create_engine
from opsflow.system.health import configured_redis

# Every network check gives up after this long (a firewall that drops packets must not
# hang a deploy step).
DEFAULT_TIMEOUT_SECONDS = 5.0


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    SKIP = "skip"
    FAIL = "fail"


@dataclass(frozen=True)
class Result:
    name: str
    status: Status
    detail: str


def failed(results: list[Result]) -> bool:
    return any(result.status is Status.FAIL for result in results)


def _reason(exc: BaseException) -> str:
    """A one-line reason: the exception's own message when it has one, else its type."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def check_configuration(
    load: Callable[[], Settings], environ: Mapping[str, str]
) -> tuple[Settings | None, list[Result]]:
    """Load the settings and apply the production refusals `opsflow serve` applies."""
    try:
        settings = load()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        return None, [Result("configuration", Status.FAIL, f"invalid settings: {problems}")]
    except (ConfigError, ValueError) as exc:
        return None, [Result("configuration", Status.FAIL, str(exc))]
    results: list[Result] = []
    try:
        settings.check_safe()
    except (ConfigError, OSError) as exc:
        results.append(Result("configuration", Status.FAIL, f"refused: {exc}"))
    else:
        results.append(Result("configuration", Status.OK, f"APP_ENV={settings.app_env}"))
    results.extend(Result("environment", Status.WARN, w) for w in environment_warnings(environ))
    return settings, results


def _database_label(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite {parsed.database}"
    return f"{parsed.get_backend_name()} {parsed.host}:{parsed.port or 5432}/{parsed.database}"


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    return Path(parsed.database)


async def check_database(settings: Settings, seconds: float) -> list[Result]:
    """Connect, `SELECT 1`, then compare the schema's revision with the code's newest."""
    label = _database_label(settings.database_url)
    sqlite_file = _sqlite_file(settings.database_url)
    if sqlite_file is not None and not sqlite_file.is_file():
        return [
            Result("database", Status.FAIL, f"{label}: no such file (run `opsflow migrate`)"),
            Result("migrations", Status.SKIP, "database unreachable"),
        ]
    engine = create_engine(
        settings.database_url,
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        pool_size=1,
    )
    try:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(seconds), engine.connect() as connection:
                await connection.exec_driver_sql("SELECT 1")
                latency_ms = (time.perf_counter() - started) * 1000
                current = await connection.run_sync(_current_revision)
        except Exception as exc:
            return [
                Result("database", Status.FAIL, f"{label}: unreachable ({_reason(exc)})"),
                Result("migrations", Status.SKIP, "database unreachable"),
            ]
    finally:
        await engine.dispose()
    head = schema.head_revision()
    database = Result("database", Status.OK, f"{label} answered in {latency_ms:.0f} ms")
    if current == head:
        return [database, Result("migrations", Status.OK, f"current ({head})")]
    at = f"at {current}" if current else "empty (no revision)"
    return [
        database,
        Result(
            "migrations",
            Status.FAIL,
            f"not current: database {at}, code at {head} (run `opsflow migrate`)",
        ),
    ]


def _current_revision(connection: Connection) -> str | None:
    revision = MigrationContext.configure(connection).get_current_revision()
    return str(revision) if revision is not None else None


async def check_redis(settings: Settings, seconds: float) -> Result:
    url = configured_redis(settings)
    if url is None:
        return Result("redis", Status.SKIP, "not configured (REDIS_URL and the broker URLs unset)")
    from redis.asyncio import Redis

    parts = urlsplit(url)
    label = parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"
    client = Redis.from_url(url, socket_timeout=seconds, socket_connect_timeout=seconds)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(seconds):
            await client.ping()
    except Exception as exc:
        return Result("redis", Status.FAIL, f"{label}: no answer to PING ({_reason(exc)})")
    finally:
        await client.aclose()
    latency_ms = (time.perf_counter() - started) * 1000
    return Result("redis", Status.OK, f"{label} answered PING in {latency_ms:.0f} ms")


async def check_smtp(settings: Settings, seconds: float) -> Result:
    """Connect as the e-mail channel does (implicit TLS, STARTTLS when required or offered),
    EHLO, and AUTH when credentials are configured; then QUIT without sending anything."""
    if not settings.smtp_host:
        directory = settings.mail_outbox_dir or settings.data_dir / "mail-outbox"
        return Result("smtp", Status.SKIP, f"not configured: e-mail is written to {directory}")
    port = settings.smtp_port or (465 if settings.smtp_ssl else 25)
    label = f"{settings.smtp_host}:{port}"
    client = aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=port,
        use_tls=settings.smtp_ssl,
        start_tls=settings.smtp_starttls,
        timeout=seconds,
    )
    try:
        async with asyncio.timeout(seconds * 3):
            await client.connect()
            reply = await client.ehlo()
            encrypted = client.get_transport_info("sslcontext") is not None
            if settings.smtp_username:
                await client.login(settings.smtp_username, settings.smtp_password or "")
            await client.quit()
    except Exception as exc:
        return Result("smtp", Status.FAIL, f"{label}: {_reason(exc)}")
    finally:
        client.close()
    greeting = reply.message.splitlines()[0] if reply.message else ""
    how = "implicit TLS" if settings.smtp_ssl else "STARTTLS" if encrypted else "no TLS"
    auth = ", AUTH accepted" if settings.smtp_username else ""
    return Result("smtp", Status.OK, f"{label} EHLO {reply.code} {greeting} ({how}{auth})")


async def run(
    load: Callable[[], Settings],
    environ: Mapping[str, str],
    seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> list[Result]:
    """Every check, in the order they are shown."""
    settings, results = check_configuration(load, environ)
    if settings is None:
        reason = "configuration invalid"
        return [*results, *(Result(name, Status.SKIP, reason) for name in _SERVICES)]
    results += await check_database(settings, seconds)
    results.append(await check_redis(settings, seconds))
    results.append(await check_smtp(settings, seconds))
    return results


_SERVICES = ("database", "migrations", "redis", "smtp")
