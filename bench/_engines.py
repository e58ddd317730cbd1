"""Shared by the benchmarks: logging, SQL helpers, `opsflow engine` processes, percentiles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


def log(message: str) -> None:
    print(message, flush=True)


async def execute(engine: AsyncEngine, sql: str, **params: Any) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(sql), params)


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as connection:
        return await connection.scalar(text(sql), params)


@dataclass
class Engine:
    process: subprocess.Popen[bytes]
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        for stream, sink in (
            (self.process.stdout, self.stdout),
            (self.process.stderr, self.stderr),
        ):
            thread = threading.Thread(target=_drain, args=(stream, sink), daemon=True)
            thread.start()
            self.threads.append(thread)

    def records(self, kind: str) -> list[dict[str, Any]]:
        found = []
        for line in list(self.stdout):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == kind:
                found.append(record)
        return found

    def ready(self) -> bool:
        return any('"started"' in line for line in list(self.stderr))

    def finish(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)
        for thread in self.threads:
            thread.join(timeout=timeout)


def _drain(stream: Any, sink: list[str]) -> None:
    if stream is None:
        return
    for raw in iter(stream.readline, b""):
        sink.append(raw.decode(errors="replace"))
    stream.close()


def spawn(url: str, workdir: str, *args: str) -> Engine:
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "INFO"}
    process = subprocess.Popen(
        [sys.executable, "-m", "opsflow", "engine", *args],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return Engine(process)


def failures(engines: Sequence[Engine]) -> str:
    bad = []
    for engine in engines:
        exits = engine.records("engine_exit")
        if engine.process.returncode != 0 or not exits or exits[-1]["failed_rounds"]:
            bad.append("".join(engine.stderr)[-2000:])
    return "\n".join(bad)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def int_list(value: str) -> list[int]:
    return [int(part) for part in value.split(",") if part.strip()]
