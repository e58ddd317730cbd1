"""Real `opsflow engine` (and `opsflow serve`) processes for integration tests: started,
their output drained by threads or written to a file (pipes never fill up), and always
ended."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


@dataclass
class EngineProcess:
    """One `opsflow engine` process, its stdout/stderr drained by threads (pipes never fill up)."""

    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    killed: bool = False
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        for stream, sink in (
            (self.process.stdout, self.stdout),
            (self.process.stderr, self.stderr),
        ):
            thread = threading.Thread(target=_drain, args=(stream, sink), daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def records(self) -> list[dict[str, Any]]:
        result = []
        for line in list(self.stdout):
            try:
                result.append(json.loads(line))
            except ValueError:
                result.append({"event": "unparsed", "line": line})
        return result

    def passes(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == "sla_pass"]

    def summary(self) -> dict[str, Any] | None:
        exits = [r for r in self.records() if r.get("event") == "engine_exit"]
        return exits[-1] if exits else None

    def sigkill(self) -> bool:
        if self.process.poll() is not None:
            return False
        self.killed = True
        self.process.send_signal(signal.SIGKILL)
        return True

    def finish(self, timeout: float = 10) -> None:
        """Make sure the process is gone and its output fully read."""
        if self.alive():
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=timeout)

    def describe(self, limit: int = 4000) -> str:
        out = "".join(self.stdout)[-limit:]
        err = "".join(self.stderr)[-limit:]
        state = "killed" if self.killed else f"exit {self.process.returncode}"
        return f"--- engine pid {self.pid} ({state})\nstdout:\n{out}\nstderr:\n{err}"


def _drain(stream: Any, sink: list[str]) -> None:
    if stream is None:
        return
    for raw in iter(stream.readline, b""):
        sink.append(raw.decode(errors="replace"))
    stream.close()


class Engines:
    """The engine processes of one test; every one of them is ended in `close`."""

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        batch: int,
        *,
        arguments: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """`arguments` replace the default `--until-idle --batch <batch>`; `env` adds to
        the process environment (e.g. `REDIS_URL`)."""
        self.database_url = database_url
        self.workdir = workdir
        self.batch = batch
        self._arguments = arguments
        self._env = env or {}
        self.all: list[EngineProcess] = []

    def arguments(self) -> list[str]:
        if self._arguments is not None:
            return list(self._arguments)
        return ["--until-idle", "--batch", str(self.batch)]

    def environment(self) -> dict[str, str]:
        return {"DATABASE_URL": self.database_url, "LOG_LEVEL": "WARNING", **self._env}

    def start(self) -> EngineProcess:
        process = subprocess.Popen(
            [sys.executable, "-m", "opsflow", "engine", *self.arguments()],
            cwd=self.workdir,  # no stray .env is picked up
            env={**os.environ, **self.environment()},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        engine = EngineProcess(process)
        self.all.append(engine)
        return engine

    def running(self) -> list[EngineProcess]:
        return [e for e in self.all if e.alive()]

    def report(self) -> str:
        return "\n".join(e.describe() for e in self.all)

    def close(self) -> None:
        for engine in self.all:
            engine.finish()

    def events_reported(self) -> int:
        """Events of committed passes, as the processes reported them."""
        return sum(p["events"] for e in self.all for p in e.passes())


def free_port() -> int:
    """A loopback TCP port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> None:
    """End a process: SIGTERM, then SIGKILL if it is still there after 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def _running(
    what: str,
    command: list[str],
    workdir: Path,
    log_path: Path,
    ready: Callable[[], bool],
    *,
    env: dict[str, str] | None = None,
    poll: float = 0.2,
) -> Iterator[None]:
    """Start `command` in `workdir` with its output in `log_path`, return once `ready()` says
    so (an HTTP error counts as not yet; 60 s at most) and end the process afterwards."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise AssertionError(f"{what} exited early:\n{log_path.read_text()}")
                try:
                    if ready():
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{what} did not become ready in 60 s"
                time.sleep(poll)  # polling for the server to come up, not waiting on a deadline
            yield
        finally:
            stop(process)


@contextlib.contextmanager
def opsflow_serve(
    workdir: Path,
    database_url: str,
    admin_password: str,
    *,
    no_engine: bool = False,
    name: str = "serve",
    **extra_env: str,
) -> Iterator[str]:
    """A real `opsflow serve` on a free loopback port, ready; yields its base URL and ends it
    afterwards. Its output goes to `workdir/<name>.log` (a distinct `name` per instance
    when several run side by side); `no_engine` serves the API only."""
    with _serve(workdir, database_url, admin_password, no_engine, name, 1, extra_env) as base:
        yield base


@contextlib.contextmanager
def opsflow_serve_workers(
    workdir: Path, database_url: str, admin_password: str, workers: int, **extra_env: str
) -> Iterator[str]:
    """`opsflow serve --no-engine --workers N`: N worker processes behind one port."""
    with _serve(workdir, database_url, admin_password, True, "serve", workers, extra_env) as base:
        yield base


@contextlib.contextmanager
def _serve(
    workdir: Path,
    database_url: str,
    admin_password: str,
    no_engine: bool,
    name: str,
    workers: int,
    extra_env: dict[str, str],
) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "OPSFLOW_ADMIN_PASSWORD": admin_password,
        "OPSFLOW_PASSWORD_TIME_COST": "1",
        "OPSFLOW_PASSWORD_MEMORY_COST_KIB": "1024",
        "LOG_LEVEL": "WARNING",
        # Request rate limits stay out of the way; tests of them switch them on.
        "OPSFLOW_RATE_LIMIT_ENABLED": "false",
        **extra_env,
    }
    command = [sys.executable, "-m", "opsflow", "serve", "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    base = f"http://127.0.0.1:{port}"
    with _running(
        "opsflow serve",
        [*command, "--no-engine"] if no_engine else command,
        workdir,
        workdir / f"{name}.log",
        lambda: httpx.get(f"{base}/ready", timeout=1).status_code == 200,
        env=env,
    ):
        yield base


@contextlib.contextmanager
def s3_server(workdir: Path) -> Iterator[str]:
    """A real S3 API server (moto's standalone server) on a free loopback port; yields its
    endpoint URL and ends it afterwards. Its output goes to `workdir/s3.log`."""
    port = free_port()
    binary = Path(sys.executable).parent / "moto_server"
    endpoint = f"http://127.0.0.1:{port}"
    with _running(
        "moto_server",
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        workdir,
        workdir / "s3.log",
        lambda: httpx.get(f"{endpoint}/moto-api/", timeout=1) is not None,
        poll=0.1,
    ):
        yield endpoint


class RedisServer:
    """A throw-away `redis-server` on a free loopback port (no persistence), for tests that
    stop and restart Redis; `restart` brings it back on the same port, empty."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        log = (self.workdir / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert self.process.poll() is None, "redis-server exited early"
            assert time.monotonic() < deadline, "redis-server did not answer in 30 s"
            time.sleep(0.05)  # polling for the server to come up

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


PG_BIN = Path("/usr/lib/postgresql")


def _pg_tool(name: str) -> str:
    """The PostgreSQL server tool `name` (initdb, pg_ctl) of the newest installed version."""
    versions = sorted(
        (p for p in PG_BIN.glob("*/bin") if (p / name).exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    assert versions, f"{name} is not installed (Debian package postgresql)"
    return str(versions[-1] / name)


class PostgresCluster:
    """A throw-away PostgreSQL cluster (`initdb` + `pg_ctl`) on a free loopback port, with
    trust authentication, for tests that stop or restart the database server. The shared
    server is never touched. The server refuses to run as root, so when the tests run as
    root the cluster runs as the `postgres` system user, in a folder of its own (pytest's
    temporary folders are private to root)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.home = Path(tempfile.mkdtemp(prefix="opsflow-pg-"))
        self.datadir = self.home / "data"
        self.log = self.home / "server.log"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *command: str) -> None:
        argv = list(command)
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        if self._as_postgres:
            shutil.chown(self.home, user="postgres")
        self._run(
            _pg_tool("initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            "-c unix_socket_directories='' -c fsync=off"
        )
        self._run(
            _pg_tool("pg_ctl"), "-D", str(self.datadir), "-l", str(self.log), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(_pg_tool("pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster.stop("immediate")
        shutil.rmtree(cluster.home, ignore_errors=True)
