"""`opsflow create-admin` and `opsflow reset-password` as real processes on an embedded
database: a lost admin password can be reset (audited, sessions ended), and a bad password
is reported in words, not as a validation dump."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from opsflow.auth.passwords import Passwords
from opsflow.db import create_engine, create_sessionmaker
from opsflow.models.audit import AuditLog
from opsflow.models.user import User


def opsflow(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'cli.db'}",
        "LOG_LEVEL": "WARNING",
        "OPSFLOW_PASSWORD_TIME_COST": "1",
        "OPSFLOW_PASSWORD_MEMORY_COST_KIB": "1024",
    }
    return subprocess.run(
        [sys.executable, "-m", "opsflow", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _stored(workdir: Path) -> tuple[str, list[tuple[str, str | None]]]:
    async def read() -> tuple[str, list[tuple[str, str | None]]]:
        engine = create_engine(f"sqlite+aiosqlite:///{workdir / 'cli.db'}")
        try:
            async with create_sessionmaker(engine)() as session:
                user = await session.scalar(select(User).where(User.username == "ops"))
                assert user is not None
                rows = await session.scalars(
                    select(AuditLog).where(AuditLog.entity_id == user.id).order_by(AuditLog.seq)
                )
                return user.hashed_password, [(r.action, r.actor_name) for r in rows]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_a_lost_admin_password_is_reset_from_the_command_line(tmp_path: Path) -> None:
    short = opsflow(
        tmp_path, "create-admin", "--username", "ops", "--email", "ops@example.com",
        "--password", "short",
    )  # fmt: skip
    assert short.returncode == 1
    assert "password: must be at least 8 characters" in short.stderr
    assert "Traceback" not in short.stderr
    assert "pydantic" not in short.stderr

    created = opsflow(
        tmp_path, "create-admin", "--username", "ops", "--email", "ops@example.com",
        "--password", "First-Pass-123",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    again = opsflow(
        tmp_path, "create-admin", "--username", "ops", "--email", "ops@example.com",
        "--password", "First-Pass-123",
    )  # fmt: skip
    assert again.returncode == 1  # an existing admin is not created twice

    too_short = opsflow(tmp_path, "reset-password", "ops", "--password", "tiny")
    assert too_short.returncode == 1
    assert "password: must be at least 8 characters" in too_short.stderr
    unknown = opsflow(tmp_path, "reset-password", "nobody", "--password", "Second-Pass-123")
    assert unknown.returncode == 1
    assert "nobody" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    reset = opsflow(tmp_path, "reset-password", "ops@example.com", "--password", "Second-Pass-123")
    assert reset.returncode == 0, reset.stderr
    assert "Password of ops reset" in reset.stdout
    hashed, audit = _stored(tmp_path)
    passwords = Passwords(time_cost=1, memory_cost_kib=1024)
    assert asyncio.run(passwords.verify(hashed, "Second-Pass-123"))
    assert not asyncio.run(passwords.verify(hashed, "First-Pass-123"))
    assert audit == [("USER_CREATED", "bootstrap"), ("USER_PASSWORD_RESET", "cli")]
