"""A real `opsflow serve` process for the benchmarks (started in a work directory)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx


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
