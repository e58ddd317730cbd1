"""A burst of parallel logins against a real `opsflow serve` keeps its memory bounded.

Each argon2 hash allocates its memory cost; without a bound on concurrent hashes a burst
of logins grows the server by (threads x memory cost). The server's peak resident memory
(VmHWM) after a burst of 200 parallel logins from one address must stay well under what
ten hashes at once would need. Runs on SQLite (embedded) and, when configured,
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "Memory-Admin-Pass-1"
MEMORY_COST_MIB = 32


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


@pytest.fixture
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[int, str]]:
    database_url = (
        request.getfixturevalue("database_url") if request.param == "configured" else None
    )
    port = _free_port()
    env = {
        **os.environ,
        "OPSFLOW_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "OPSFLOW_PASSWORD_TIME_COST": "1",
        "OPSFLOW_PASSWORD_MEMORY_COST_KIB": str(MEMORY_COST_MIB * 1024),
        "LOG_LEVEL": "WARNING",
        # The failed-login limit is under test here, not the per-address request limit.
        "OPSFLOW_RATE_LIMIT_ENABLED": "false",
    }
    env.pop("DATABASE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    process = subprocess.Popen(
        [sys.executable, "-m", "opsflow", "serve", "--port", str(port), "--no-engine"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "opsflow serve exited early"
            assert time.monotonic() < deadline, "opsflow serve did not become ready in 60 s"
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # polling for the server to come up, not waiting on a deadline
        yield process.pid, base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


async def _burst(base: str, count: int) -> list[int]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=120, limits=limits) as http:
        responses = await asyncio.gather(
            *(
                http.post(
                    "/auth/login", json={"username": f"nobody-{index}", "password": "wrong-pass"}
                )
                for index in range(count)
            )
        )
    return [r.status_code for r in responses]


@pytest.mark.parametrize("served", ["embedded", "configured"], indirect=True)
def test_login_burst_keeps_server_memory_bounded(served: tuple[int, str]) -> None:
    pid, base = served
    # One login first, so the baseline includes a hasher thread that has run once.
    warm = httpx.post(
        f"{base}/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert warm.status_code == 200, warm.text
    before_kib = _status_kib(pid, "VmRSS")

    started = time.time()
    statuses = asyncio.run(_burst(base, 200))
    ended = time.time()

    peak_kib = _status_kib(pid, "VmHWM")
    growth_mib = (peak_kib - before_kib) / 1024
    print(f"login burst: server grew by {growth_mib:.0f} MiB")
    assert growth_mib < 10 * MEMORY_COST_MIB, f"server grew by {growth_mib:.0f} MiB"
    assert set(statuses) <= {401, 429, 503}, sorted(set(statuses))
    # The address limit is 50 failed attempts per fixed 15-minute window on the server's
    # clock (a burst straddling a boundary gets a fresh 50). A 503 (every hasher busy) gives
    # its attempt back, so the bound is on the attempts that were hashed: the 401s.
    windows = int(ended // 900) - int(started // 900) + 1
    assert statuses.count(401) <= 50 * windows, (windows, statuses)
    assert statuses.count(429) + statuses.count(503) >= 200 - 50 * windows
    assert httpx.get(f"{base}/health", timeout=30).status_code == 200
