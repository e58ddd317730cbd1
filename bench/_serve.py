"""A real `opsflow serve` process for the benchmarks (started in a work directory), a fresh
PostgreSQL database for it, and the CPU time a process tree has used (from /proc)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


UNREACHABLE_LIMITS = {
    "OPSFLOW_RATE_LIMIT_PER_MINUTE": "1000000000",
    "OPSFLOW_RATE_LIMIT_WRITES_PER_MINUTE": "1000000000",
    "OPSFLOW_RATE_LIMIT_LOGIN_PER_MINUTE": "1000000000",
}


def start_server(
    workdir: str, env: dict[str, str], args: list[str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `opsflow serve` with `env` over this environment; wait until /ready answers 200.

    `DATABASE_URL` is taken from `env` only (default: ./opsflow.db in `workdir`).
    """
    port = free_port()
    # The rate limits count every request (their cost is measured) but never refuse one.
    environment = {**os.environ, "LOG_LEVEL": "WARNING", **UNREACHABLE_LIMITS}
    environment.pop("DATABASE_URL", None)
    environment.update(env)
    process = subprocess.Popen(
        [sys.executable, "-m", "opsflow", "serve", "--port", str(port), *(args or [])],
        cwd=workdir,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # waiting for the server to come up
    process.kill()
    raise SystemExit("opsflow serve did not become ready in 60 s")


def process_tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(parents.get(pid, []))
    return found


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def backend_pids(url: str) -> list[int]:
    """The PostgreSQL backends connected to the database at `url` (a server's pool)."""
    from sqlalchemy import text

    from opsflow.config import Settings
    from opsflow.db import create_engine

    engine = create_engine(Settings(database_url=url).database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            return [int(row[0]) for row in rows]
    finally:
        await engine.dispose()


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of `root` and its live descendants (not the database's)."""
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def pg_database(admin_url: str, prefix: str) -> tuple[str, str]:
    """Create a fresh database; answer (asyncpg-style URL, name)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", admin_url, "-q", "-c", f'CREATE DATABASE "{name}"'], check=True)
    return admin_url.rsplit("/", 1)[0] + "/" + name, name


def analyze_pg_database(url: str) -> None:
    """``ANALYZE`` the database: what autovacuum does once a table has changed enough. A
    scratch database filled by a run has no statistics, and a server may run with autovacuum
    off (this machine's does), so without it the planner guesses over thousands of rows."""
    subprocess.run(["psql", url.replace("+asyncpg", ""), "-q", "-c", "ANALYZE"], check=True)


def drop_pg_database(admin_url: str, name: str) -> None:
    subprocess.run(
        ["psql", admin_url, "-q", "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
        check=False,
    )
