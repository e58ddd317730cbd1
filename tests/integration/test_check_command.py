"""`opsflow check` against real services on loopback: it passes with the database, Redis and
an SMTP server up, and fails with one clear line per problem (database down, schema behind,
SMTP credentials refused, a configuration production refuses). Two runs are real processes,
read the way an operator reads them: the table on stdout and the exit status."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from opsflow import schema
from opsflow.config import Settings
from opsflow.system import check
from tests.conftest import PG_URL, _pg_admin, make_settings
from tests.sinks import SmtpSink, free_port

REDIS_URL = os.environ.get("OPSFLOW_TEST_REDIS_URL")
STRONG_SECRET = "a-production-secret-of-more-than-32-characters"


def run_check(workdir: Path, env: dict[str, str]) -> tuple[int, dict[str, tuple[str, str]]]:
    """`opsflow check` as a process: its exit status and {check: (status, detail)}."""
    base = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
        "COLUMNS": "300",  # one table row per line
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.run(
        [sys.executable, "-m", "opsflow", "check", "--timeout", "5"],
        cwd=workdir,  # no .env from the checkout
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    rows: dict[str, tuple[str, str]] = {}
    for line in process.stdout.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│┃]", line)[1:-1]]
        if len(cells) == 3 and cells[1] in {"ok", "warn", "skip", "fail"}:
            rows.setdefault(cells[0], (cells[1], cells[2]))
    print(process.stdout, process.stderr)
    return process.returncode, rows


def test_passes_with_everything_up(
    database_url: str, smtp_with_auth: tuple[SmtpSink, int], tmp_path: Path
) -> None:
    sink, port = smtp_with_auth
    env = {
        "APP_ENV": "production",
        "JWT_SECRET_KEY": STRONG_SECRET,
        "DATABASE_URL": database_url,
        "OPSFLOW_SMTP_HOST": "127.0.0.1",
        "OPSFLOW_SMTP_PORT": str(port),
        "OPSFLOW_SMTP_STARTTLS": "false",
        "OPSFLOW_SMTP_USERNAME": "opsflow",
        "OPSFLOW_SMTP_PASSWORD": "s3cret",
    }
    if REDIS_URL:
        env["REDIS_URL"] = REDIS_URL
    status, rows = run_check(tmp_path, env)
    assert status == 0, rows
    assert rows["configuration"] == ("ok", "APP_ENV=production")
    assert rows["database"][0] == "ok"
    assert rows["migrations"] == ("ok", f"current ({schema.head_revision()})")
    assert rows["smtp"][0] == "ok"
    assert rows["smtp"][1].startswith(f"127.0.0.1:{port} EHLO 250 ")
    assert "AUTH accepted" in rows["smtp"][1]
    assert rows["redis"][0] == ("ok" if REDIS_URL else "skip")
    assert sink.logins == [("opsflow", "s3cret")]
    assert sink.received == []  # nothing was sent


def test_fails_clearly_with_the_database_down(tmp_path: Path) -> None:
    closed = free_port()  # bound, released: nothing listens there
    status, rows = run_check(
        tmp_path, {"DATABASE_URL": f"postgresql://opsflow@127.0.0.1:{closed}/opsflow"}
    )
    assert status == 1
    state, detail = rows["database"]
    assert state == "fail"
    assert detail.startswith(f"postgresql 127.0.0.1:{closed}/opsflow: unreachable (")
    assert "Connect" in detail or "refused" in detail
    assert rows["migrations"] == ("skip", "database unreachable")
    assert rows["configuration"][0] == "ok"


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[str]:
    """A database that exists but was never migrated."""
    if not PG_URL:
        path = tmp_path / "empty.db"
        sqlite3.connect(path).close()
        yield f"sqlite+aiosqlite:///{path}"
        return
    admin = make_url(Settings(database_url=PG_URL).database_url)
    name = f"opsflow_empty_{uuid.uuid4().hex[:10]}"
    admin_url = admin.render_as_string(hide_password=False)
    _pg_admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        _pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_fails_when_the_migrations_are_behind(empty_database: str, tmp_path: Path) -> None:
    results = await check.run(
        lambda: make_settings(empty_database, data_dir=tmp_path / "data"), {}, seconds=5
    )
    by_name = {result.name: result for result in results}
    assert by_name["database"].status is check.Status.OK
    migrations = by_name["migrations"]
    assert migrations.status is check.Status.FAIL
    assert migrations.detail == (
        f"not current: database empty (no revision), code at {schema.head_revision()} "
        "(run `opsflow migrate`)"
    )
    assert check.failed(results)


async def test_a_missing_sqlite_file_is_reported_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    results = await check.run(
        lambda: make_settings(f"sqlite+aiosqlite:///{path}", data_dir=tmp_path), {}, seconds=5
    )
    database = next(result for result in results if result.name == "database")
    assert database.status is check.Status.FAIL
    assert "no such file" in database.detail
    assert not path.exists()


async def test_refused_smtp_credentials_fail_the_smtp_line(
    database_url: str, smtp_with_auth: tuple[SmtpSink, int], tmp_path: Path
) -> None:
    _sink, port = smtp_with_auth
    settings = make_settings(
        database_url,
        data_dir=tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_username="opsflow",
        smtp_password="wrong",
    )
    result = await check.check_smtp(settings, seconds=5)
    assert result.status is check.Status.FAIL
    assert result.detail.startswith(f"127.0.0.1:{port}: SMTPAuthenticationError: ")
    assert "wrong" not in result.detail


async def test_a_configuration_production_refuses_fails_and_typos_warn() -> None:
    environ = {"OPSFLOW_ENGINE_INTERVAL_SECOND": "2"}
    settings, results = check.check_configuration(lambda: Settings(app_env="production"), environ)
    assert settings is not None
    assert [(r.name, r.status) for r in results] == [
        ("configuration", check.Status.FAIL),
        ("environment", check.Status.WARN),
    ]
    assert "default JWT_SECRET_KEY" in results[0].detail
    assert "did you mean OPSFLOW_ENGINE_INTERVAL_SECONDS?" in results[1].detail


async def test_invalid_settings_fail_and_skip_the_services() -> None:
    results = await check.run(lambda: Settings(access_token_expire_minutes=0), {})
    assert results[0].status is check.Status.FAIL
    assert results[0].detail.startswith("invalid settings: ")
    assert "ACCESS_TOKEN_EXPIRE_MINUTES" in results[0].detail or "access_token" in results[0].detail
    assert [(r.name, r.status) for r in results[1:]] == [
        (name, check.Status.SKIP) for name in ("database", "migrations", "redis", "smtp")
    ]


async def test_a_configured_redis_that_does_not_answer_fails_the_redis_line(
    database_url: str, tmp_path: Path
) -> None:
    closed = free_port()
    settings = make_settings(
        database_url, data_dir=tmp_path, celery_broker_url=f"redis://127.0.0.1:{closed}/0"
    )
    result = await check.check_redis(settings, seconds=5)
    assert result.status is check.Status.FAIL
    assert result.detail.startswith(f"127.0.0.1:{closed}: no answer to PING (")
