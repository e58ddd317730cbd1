"""`opsflow engine` as a real process: it runs rounds, records its heartbeat while it runs,
removes it when stopped, and refuses bad options and an unmigrated database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from opsflow.db import create_engine
from opsflow.models.engine import EngineHeartbeat


def _env(database_url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("OPSFLOW_") and key not in {"DATABASE_URL", "REDIS_URL"}
    }
    env.update({"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"})
    return env


def _start(database_url: str, workdir: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "opsflow", "engine", *args],
        cwd=workdir,  # no stray .env is picked up
        env=_env(database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _records(stdout: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def _heartbeats(db: AsyncEngine) -> list[Any]:
    async with db.connect() as connection:
        return list((await connection.execute(select(EngineHeartbeat))).all())


async def test_engine_process_records_its_heartbeat_and_removes_it_when_stopped(
    database_url: str, db: AsyncEngine, tmp_path: Path
) -> None:
    process = _start(database_url, tmp_path, "--passes", "relay,sla", "--interval", "0.2")
    try:
        deadline = time.monotonic() + 60
        while not (rows := await _heartbeats(db)):
            if process.poll() is not None or time.monotonic() > deadline:
                out, err = process.communicate(timeout=10)
                raise AssertionError(f"no heartbeat\nstdout:\n{out!r}\nstderr:\n{err!r}")
            await asyncio.sleep(0.1)
        (row,) = rows
        assert (row.driver, row.passes, row.pid) == ("engine", "sla,relay", process.pid)
        assert row.interval_seconds == 0.2
        assert row.rounds >= 1
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == 0, err.decode()
    (summary,) = [r for r in _records(out) if r["event"] == "engine_exit"]
    assert summary["reason"] == "stopped"
    assert summary["passes_selected"] == ["sla", "relay"]
    assert summary["rounds"] >= 1
    assert summary["failed_rounds"] == 0
    assert await _heartbeats(db) == []  # stopped cleanly: not reported as a stale process


async def test_engine_refuses_unknown_passes(database_url: str, tmp_path: Path) -> None:
    process = _start(database_url, tmp_path, "--passes", "sla,nope", "--once")
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "sla,heartbeats,flapping,relay,escalation,delivery" in err.decode()


async def test_engine_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    process = _start(url, tmp_path, "--passes", "all", "--once")
    out, _err = process.communicate(timeout=60)
    assert process.returncode == 2
    (summary,) = _records(out)
    assert (summary["event"], summary["reason"]) == ("engine_exit", "schema_not_current")
