"""The WebSocket stream under many connections: one real `opsflow serve` (embedded engine,
SQLite by default), N clients spread over separate client processes.

Figures printed (nothing asserted):

1. connections: how many opened and subscribed, how long that took, the server's RSS
   before and after, in total and per connection;
2. one event broadcast to every connection (--broadcasts times, one after the other):
   commit -> receipt p50 / p99 / max over every frame (commit: the event's `occurred_at`,
   the instant its outbox row was written in the request's transaction; receipt: the
   client's clock when the frame arrived; same machine) and the server's CPU per frame;
3. a steady stream of events (default 100/s for 60 s) to every connection: p50 / p99 /
   max commit -> receipt, frames received against expected, connections the server closed
   (1013: the client read too slowly) and the server's own metrics; with `--stalled N`, N
   connections stop reading for this phase (what they are not sent counts against the
   server's buffer budget);
4. the server's peak RSS, whether any connection saw an id skipped, repeated or out of
   order, and how long the server takes to stop (SIGTERM) with every socket still open.

Every client subscribes to one team's channel; events are those of tasks of that team
(see `Source`: by default outbox rows committed straight into the database).
Connections are spread over users (at most OPSFLOW_WS_MAX_CONNECTIONS_PER_USER = 1000
each). The relay is woken by the commit that wrote the event: in the server's own process
for `--source api`; through a PostgreSQL notification for `--source outbox` on PostgreSQL
(the bench's transaction notifies as a unit of work does). Rows the bench inserts into an
SQLite file from its own process wake nothing: they wait for the server's next poll
(--engine-interval), as would any writer outside OpsFlow. The load average is printed at
the start and the end: on a shared machine it says how much the figures can be trusted.

    python bench/websocket.py [--connections 10000] [--processes 4] [--rate 100]
                              [--duration 60] [--engine-interval 1] [--broadcasts 5]
                              [--source api|outbox] [--database-url URL] [--stalled N]
                              [--redis-url URL [--workers N]]

With `--redis-url` the server is API-only and a separate `opsflow engine` relays through
Redis; `--workers N` then spreads the sockets over N server processes, each listening on
Redis (the server's CPU and RSS are those of all of them).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import multiprocessing
import os
import random
import resource
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any, cast

import httpx
from _serve import cpu_seconds, process_tree, start_server

PASSWORD = "Websocket-Bench-123"
PER_USER = 1000
ENGINE_COMMAND = [sys.executable, "-m", "opsflow", "engine", "--passes", "all"]
BUCKET_MS = 0.1  # latency resolution of the merged histograms
CHANNEL = "opsflow_outbox"  # the outbox notification channel (opsflow.events.wake.CHANNEL)
IDLE_SAMPLE_SECONDS = 3.0


def raise_fd_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def load_average() -> str:
    with open("/proc/loadavg") as loadavg:
        return " ".join(loadavg.read().split()[:3])


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """The server's RSS (or peak, VmHWM): of every process of it with `--workers`."""
    total, found = 0, False
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/status") as status:
                for line in status:
                    if line.startswith(f"{field}:"):
                        total += int(line.split()[1])
                        found = True
        except OSError:
            continue
    return total / 1024 if found else float("nan")


# --- client processes -------------------------------------------------------------------
#
# Each client is an asyncio Protocol on the raw socket (uvloop when installed): a normal
# HTTP/1.1 upgrade handshake, then only the frame headers are parsed, and of an event only
# its `id` (its `occurred_at` once per id, shared by the process's clients). Every event
# still counts: its receipt time, and whether its id follows the previous one (a gap, a
# duplicate or a reordering is counted). Ten thousand `websockets` clients, each parsing
# every frame's JSON, spent more of these 2 cores than the server did, and their CPU was
# part of the latency measured; these leave the server's.

EVENT_PREFIX = b'{"id":'


class Clients:
    """One client process's connections and what they received."""

    def __init__(self) -> None:
        self.open = 0
        self.failed = 0
        self.closed: Counter[int] = Counter()
        self.received = 0
        self.gaps = 0  # an id more than one after the connection's previous one
        self.disorder = 0  # an id not after the connection's previous one (dup or reorder)
        self.latency: Counter[int] = Counter()  # in BUCKET_MS steps
        self.sockets: list[LeanSocket] = []
        self.stalled = 0  # open sockets told to stop reading (`stall`)
        self._instants: dict[int, float] = {}
        self._change = asyncio.Event()

    def changed(self) -> None:
        self._change.set()

    async def settled(self, total: int) -> None:
        """Until every connection opened or failed."""
        while self.open + self.failed < total:
            self._change.clear()
            await self._change.wait()

    def reset(self) -> None:
        self.received = 0
        self.latency.clear()

    def committed(self, ident: int, payload: bytes) -> float:
        instant = self._instants.get(ident)
        if instant is None:
            occurred = json.loads(payload)["occurred_at"]
            instant = datetime.fromisoformat(occurred.replace("Z", "+00:00")).timestamp()
            self._instants[ident] = instant
        return instant

    def stall(self, count: int) -> None:
        """Stop reading on `count` open sockets: slow readers whose unsent frames pile up
        in the server (until it drops them)."""
        for sock in self.sockets[:count]:
            if sock.transport is not None and not sock.transport.is_closing():
                sock.transport.pause_reading()
                sock.paused = True
                self.stalled += 1

    def report(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "stalled": self.stalled,
            "failed": self.failed,
            "closed": dict(self.closed),
            "received": self.received,
            "gaps": self.gaps,
            "disorder": self.disorder,
            "latency": dict(self.latency),
        }


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (a zero mask key: valid, and the payload unchanged)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    else:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    return head + b"\x00\x00\x00\x00" + payload


class LeanSocket(asyncio.Protocol):
    """One bench connection: handshake, `auth.ok`, subscribe, `subscribed`, then events."""

    def __init__(self, url: str, channel: str, stats: Clients, ready: asyncio.Future[bool]):
        self.url = url
        self.channel = channel
        self.stats = stats
        self.ready = ready
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.replies = 0  # auth.ok, subscribed
        self.last: int | None = None
        self.close_code = 0
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is not one
        rest = self.url.split("://", 1)[1]
        host, _, path = rest.partition("/")
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self._fail()
                return
            del buffer[: end + 4]
            self.upgraded = True
        stats = self.stats
        offset, size = 0, len(buffer)
        while size - offset >= 2:
            opcode, length = buffer[offset] & 0x0F, buffer[offset + 1] & 0x7F
            start = offset + 2
            if length == 126:
                if size - offset < 4:
                    break
                length = (buffer[offset + 2] << 8) | buffer[offset + 3]
                start = offset + 4
            elif length == 127:
                if size - offset < 10:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
                start = offset + 10
            end = start + length
            if end > size:
                break
            offset = end
            if opcode == 1:
                if buffer.startswith(EVENT_PREFIX, start):
                    comma = buffer.index(b",", start)
                    ident = int(buffer[start + 6 : comma])
                    last = self.last
                    if last is not None and ident != last + 1:
                        if ident > last:
                            stats.gaps += 1
                        else:
                            stats.disorder += 1
                    self.last = ident
                    stats.received += 1
                    committed = stats.committed(ident, bytes(buffer[start:end]))
                    stats.latency[round((now - committed) * 1000 / BUCKET_MS)] += 1
                elif self.replies < 2:
                    self._reply()
            elif opcode == 8:
                if length >= 2:
                    self.close_code = (buffer[start] << 8) | buffer[start + 1]
                self._send(client_frame(8, bytes(buffer[start : start + 2])))
                if self.transport is not None:
                    self.transport.close()
            elif opcode == 9:
                self._send(client_frame(10, bytes(buffer[start:end])))
        del buffer[:offset]

    def _reply(self) -> None:
        self.replies += 1
        if self.replies == 1:  # auth.ok
            message = json.dumps({"action": "subscribe", "channels": [self.channel]})
            self._send(client_frame(1, message.encode()))
        elif not self.ready.done():  # subscribed
            self.ready.set_result(True)

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _fail(self) -> None:
        if not self.ready.done():
            self.ready.set_result(False)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_result(False)
            return
        self.stats.open -= 1
        self.stats.stalled -= self.paused
        self.stats.closed[self.close_code] += 1
        self.stats.changed()


async def _one(url: str, channel: str, stats: Clients, gate: asyncio.Semaphore) -> None:
    loop = asyncio.get_running_loop()
    host, port = url.split("://", 1)[1].split("/", 1)[0].split(":")
    async with gate:
        ready: asyncio.Future[bool] = loop.create_future()
        sock = LeanSocket(url, channel, stats, ready)
        try:
            await loop.create_connection(lambda: sock, host, int(port))
            opened = await asyncio.wait_for(ready, 120)
        except (OSError, TimeoutError):
            opened = False
    if opened:
        stats.open += 1
        stats.sockets.append(sock)
    else:
        stats.failed += 1
    stats.changed()


async def _client_main(urls: list[str], channel: str, pipe: Connection) -> None:
    stats = Clients()
    gate = asyncio.Semaphore(100)
    tasks = [asyncio.create_task(_one(url, channel, stats, gate)) for url in urls]
    await stats.settled(len(urls))
    await asyncio.gather(*tasks)
    pipe.send(stats.report())
    while True:
        command = await asyncio.to_thread(pipe.recv)
        if command == "reset":
            stats.reset()
        elif command.startswith("stall:"):
            stats.stall(int(command.split(":")[1]))
        elif command == "stop":
            pipe.send(stats.report())
            return
        pipe.send(stats.report())


def client_process(urls: list[str], channel: str, pipe: Connection) -> None:
    raise_fd_limit()
    try:
        import uvloop
    except ImportError:
        asyncio.run(_client_main(urls, channel, pipe))
    else:
        uvloop.run(_client_main(urls, channel, pipe))


# --- the run ----------------------------------------------------------------------------


def percentile(hist: Counter[int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return float("nan")
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return bucket * BUCKET_MS
    return max(hist) * BUCKET_MS


def ask(pipes: list[Connection], command: str) -> list[dict[str, Any]]:
    for pipe in pipes:
        pipe.send(command)
    return [pipe.recv() for pipe in pipes]


def order_problems(reports: list[dict[str, Any]]) -> str:
    gaps = sum(r["gaps"] for r in reports)
    disorder = sum(r["disorder"] for r in reports)
    return f"ids skipped on a connection {gaps} times, repeated or reordered {disorder} times"


def merged(reports: list[dict[str, Any]]) -> tuple[Counter[int], int, int, Counter[int]]:
    hist: Counter[int] = Counter()
    closed: Counter[int] = Counter()
    for report in reports:
        hist.update({int(k): v for k, v in report["latency"].items()})
        closed.update({int(k): v for k, v in report["closed"].items()})
    return (
        hist,
        sum(r["received"] for r in reports),
        sum(r["open"] for r in reports),
        closed,
    )


def line(name: str, hist: Counter[int]) -> str:
    return (
        f"{name}: p50 {percentile(hist, 0.5):.1f} ms, p99 {percentile(hist, 0.99):.1f} ms, "
        f"max {percentile(hist, 1.0):.1f} ms"
    )


def per_frame(phase: str, cpu: float, frames: float, idle: float, idle_open: float) -> str:
    """The server process's CPU (from /proc, so the scheduler's noise on a busy machine
    does not count) per frame it wrote, also net of `idle` (the idle server's CPU over the
    same time: its engine polling) and of `idle_open` (the server's CPU with the sockets open
    and nothing sent, over the same time: also their pings), which leaves the frames' own
    cost."""
    micros = cpu * 1e6 / frames if frames else float("nan")
    net = (cpu - idle) * 1e6 / frames if frames else float("nan")
    own = (cpu - idle_open) * 1e6 / frames if frames else float("nan")
    return (
        f"{phase}: server CPU {cpu:.2f} s for {frames:.0f} frames written: {micros:.1f} us/frame"
        f" ({net:.1f} us net of the idle rate, {own:.1f} us net of the rate with the sockets "
        "open)"
    )


def clients_cpu(children: list[multiprocessing.Process]) -> float:
    return sum(cpu_seconds(child.pid) for child in children if child.pid is not None)


def client_cost(phase: str, cpu: float, frames: int) -> str:
    micros = cpu * 1e6 / frames if frames else float("nan")
    return f"{phase}: client processes' CPU {cpu:.2f} s, {micros:.1f} us per frame received"


def split(
    phase: str, before: dict[str, float], after: dict[str, float], hist: Counter[int], got: int
) -> str:
    """The server's mean commit -> written (its delivery histogram, taken once a batch's
    writes to every socket are done: commit -> the last socket written) beside the clients'
    mean commit -> receipt."""
    name = "opsflow_ws_delivery_latency_seconds"
    count = after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0)
    total = after.get(f"{name}_sum", 0) - before.get(f"{name}_sum", 0)
    server = total * 1000 / count if count else float("nan")
    receipt = sum(k * v for k, v in hist.items()) * BUCKET_MS / got if got else float("nan")
    return (
        f"{phase}: mean commit -> written to every socket (server) {server:.1f} ms, "
        f"-> received {receipt:.1f} ms"
    )


def server_metrics(client: httpx.Client, headers: dict[str, str]) -> dict[str, float]:
    """The server's WebSocket series ({} when it is too busy to answer in time)."""
    try:
        text = client.get("/metrics", headers=headers, timeout=120).text
    except httpx.HTTPError:
        return {}
    wanted = (
        "opsflow_ws_connections_open",
        "opsflow_ws_messages_sent_total",
        "opsflow_ws_evictions_total",
        "opsflow_ws_shed_total",
        "opsflow_ws_buffered_bytes",
        "opsflow_ws_delivery_latency_seconds_count",
        "opsflow_ws_delivery_latency_seconds_sum",
    )
    values = {}
    for row in text.splitlines():
        name, _, value = row.partition(" ")
        if name in wanted:
            values[name] = float(value)
    return values


class Source:
    """Where events come from. `api`: tasks created through POST /tasks (each a
    `task.created` committed by the request). `outbox`: copies of one real `task.updated`
    outbox row of a task of the team, committed straight into the outbox (one row per
    transaction), so the figures are the stream's own (relay, hub, sockets) and not the
    task API's write cost, which bench/task_api.py measures."""

    def __init__(self, kind: str, root: str, headers: dict[str, str], team: str, url: str):
        self.kind = kind
        self.root = root
        self.headers = headers
        self.team = team
        self.url = url
        self.template: tuple[Any, dict[str, Any]] | None = None

    def prepare(self, client: httpx.Client) -> None:
        if self.kind != "outbox":
            return
        created = client.post(
            "/api/v1/tasks", json={"title": "bench", "team_id": self.team}, headers=self.headers
        )
        created.raise_for_status()
        task = created.json()["id"]
        client.patch(
            f"/api/v1/tasks/{task}",
            json={"title": "bench template"},
            headers={**self.headers, "If-Match": created.headers["ETag"]},
        ).raise_for_status()

        async def read() -> tuple[Any, dict[str, Any]]:
            from sqlalchemy import select

            from opsflow.config import Settings
            from opsflow.db import create_engine
            from opsflow.models.outbox import OutboxEvent

            engine = create_engine(Settings(database_url=self.url).database_url)
            try:
                async with engine.connect() as connection:
                    row = (
                        await connection.execute(
                            select(OutboxEvent.aggregate_id, OutboxEvent.payload)
                            .where(OutboxEvent.event_type == "task.updated")
                            .order_by(OutboxEvent.created_at.desc())
                            .limit(1)
                        )
                    ).one()
            finally:
                await engine.dispose()
            return row[0], dict(row[1])

        self.template = asyncio.run(read())

    async def run(self, rate: float, count: int) -> float:
        """`count` events at `rate` per second, each started on schedule (overlapping when
        one takes longer than the interval); how far past the schedule's end the last one
        was committed, in seconds."""
        if self.kind == "outbox":
            return await self._outbox(rate, count)
        async with httpx.AsyncClient(
            base_url=self.root, timeout=120, limits=httpx.Limits(max_connections=200)
        ) as client:

            async def one(n: int) -> None:
                response = await client.post(
                    "/api/v1/tasks",
                    json={"title": f"bench {n}", "team_id": self.team},
                    headers=self.headers,
                )
                response.raise_for_status()

            return await paced(rate, count, one)

    async def _outbox(self, rate: float, count: int) -> float:
        import uuid
        from datetime import UTC

        from opsflow.db import create_engine
        from opsflow.models.outbox import OutboxEvent

        assert self.template is not None
        aggregate, payload = self.template
        from sqlalchemy import insert, text

        from opsflow.config import Settings

        url = Settings(database_url=self.url).database_url
        engine = create_engine(url, **({} if url.startswith("sqlite") else {"pool_size": 20}))

        notify = engine.dialect.name == "postgresql"

        async def one(n: int) -> None:
            async with engine.begin() as connection:
                now = datetime.now(UTC)
                await connection.execute(
                    insert(OutboxEvent).values(
                        id=uuid.uuid4(),
                        aggregate_type="task",
                        aggregate_id=aggregate,
                        event_type="task.updated",
                        payload=payload,
                        created_at=now,
                        available_at=now,
                        attempts=0,
                    )
                )
                if notify:  # what a unit of work that wrote outbox rows does at commit
                    await connection.execute(
                        text("SELECT pg_notify(:channel, 'bench')"), {"channel": CHANNEL}
                    )

        try:
            return await paced(rate, count, one)
        finally:
            await engine.dispose()


async def paced(rate: float, count: int, one: Any) -> float:
    start = time.monotonic()
    pending = []
    for n in range(count):
        wait = start + n / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)  # pacing the events
        pending.append(asyncio.create_task(one(n + 1)))
    await asyncio.gather(*pending)
    return max(0.0, time.monotonic() - start - count / rate)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=0, help="default: one per 2,500")
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of steady events")
    parser.add_argument("--engine-interval", type=float, default=1.0)
    parser.add_argument(
        "--broadcasts", type=int, default=5, help="single events broadcast one after the other"
    )
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--source", choices=("outbox", "api"), default="outbox")
    parser.add_argument(
        "--stalled",
        type=int,
        default=0,
        help="connections that stop reading for the steady phase (slow readers)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="`opsflow serve --workers N`: the sockets spread over N processes (needs "
        "--redis-url, which carries every event to each of them)",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help="serve API-only (--no-engine) and relay from a separate `opsflow engine` "
        "process through this Redis (the scaled-out shape); default: the relay inside serve",
    )
    args = parser.parse_args()
    if args.workers > 1 and not args.redis_url:
        parser.error("--workers above 1 needs --redis-url (events reach every worker through it)")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    limit = raise_fd_limit()
    processes = args.processes or max(1, math.ceil(args.connections / 2500))
    print(f"fd limit {limit}; {args.connections} connections over {processes} client processes")
    print(f"load average at the start: {load_average()}")

    workdir = tempfile.mkdtemp(prefix="opsflow-ws-bench-")
    env = {
        "OPSFLOW_ADMIN_PASSWORD": PASSWORD,
        "OPSFLOW_ENGINE_INTERVAL_SECONDS": str(args.engine_interval),
        "OPSFLOW_WS_MAX_CONNECTIONS_PER_USER": str(PER_USER),
        "OPSFLOW_PASSWORD_TIME_COST": "1",
        "OPSFLOW_PASSWORD_MEMORY_COST_KIB": "1024",
    }
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    database_url = args.database_url or f"sqlite+aiosqlite:///{workdir}/opsflow.db"
    engine = None
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
        env["OPSFLOW_ENGINE_ENABLED"] = "false"
    server, root = start_server(workdir, env, ["--workers", str(args.workers)])
    print(f"server pid {server.pid}, {args.workers} worker process(es)")
    if args.redis_url:
        engine = subprocess.Popen(
            [*ENGINE_COMMAND, "--interval", str(args.engine_interval)],
            cwd=workdir,
            env={**os.environ, **env, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"},
            stdout=subprocess.DEVNULL,
        )
        print(f"relay in a separate `opsflow engine` process, through {args.redis_url}")
    children: list[multiprocessing.Process] = []
    try:
        with httpx.Client(base_url=root, timeout=60) as client:
            token = client.post(
                "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD}
            ).json()["access_token"]
            admin = {"Authorization": f"Bearer {token}"}
            team = client.post("/api/v1/teams", json={"name": "bench"}, headers=admin).json()["id"]
            tokens = []
            for n in range(math.ceil(args.connections / PER_USER)):
                name = f"bench-viewer-{n}"
                client.post(
                    "/api/v1/auth/register",
                    json={
                        "email": f"{name}@example.com",
                        "username": name,
                        "password": PASSWORD,
                        "full_name": name,
                        "role": "viewer",
                    },
                    headers=admin,
                ).raise_for_status()
                tokens.append(
                    client.post(
                        "/api/v1/auth/login", json={"username": name, "password": PASSWORD}
                    ).json()["access_token"]
                )
            source = Source(args.source, root, admin, team, database_url)
            source.prepare(client)
            ws = root.replace("http://", "ws://") + "/api/v1/ws?token="
            urls = [ws + tokens[i // PER_USER] for i in range(args.connections)]
            time.sleep(1)  # let the server settle after start-up before the baseline
            before = rss_mib(server.pid)
            print(f"server RSS before: {before:.1f} MiB")
            # The idle server's own CPU rate (the engine polling every --engine-interval),
            # so the cost of opening sockets can be told apart from it.
            idle_cpu, idle_from = cpu_seconds(server.pid), time.monotonic()
            time.sleep(IDLE_SAMPLE_SECONDS)  # sampling the idle server's CPU
            idle_rate = (cpu_seconds(server.pid) - idle_cpu) / (time.monotonic() - idle_from)
            print(f"idle server CPU: {idle_rate * 1000:.0f} ms per second")

            pipes = []
            started = time.monotonic()
            for k in range(processes):
                mine, theirs = multiprocessing.Pipe()
                child = multiprocessing.Process(
                    target=client_process, args=(urls[k::processes], f"team:{team}", theirs)
                )
                child.start()
                children.append(child)
                pipes.append(mine)
            cpu_open = cpu_seconds(server.pid)
            ready = [pipe.recv() for pipe in pipes]
            opened = sum(r["open"] for r in ready)
            failed = sum(r["failed"] for r in ready)
            took = time.monotonic() - started
            after = rss_mib(server.pid)
            per = (after - before) * 1024 / max(opened, 1)
            print(f"connections: {opened} open and subscribed, {failed} failed, in {took:.1f} s")
            spent = cpu_seconds(server.pid) - cpu_open
            opening = spent * 1000 / max(opened + failed, 1)
            net = (spent - idle_rate * took) * 1000 / max(opened + failed, 1)
            print(
                f"server CPU per connection opened and subscribed: {opening:.2f} ms "
                f"({net:.2f} ms net of the idle rate)"
            )
            grown = after - before
            print(f"server RSS with them: {after:.1f} MiB (+{grown:.1f} MiB, {per:.1f} KiB each)")
            # What the open sockets cost while nothing is sent (their protocol pings, the
            # heartbeat sweep): part of every phase's CPU below.
            open_cpu, open_from = cpu_seconds(server.pid), time.monotonic()
            time.sleep(IDLE_SAMPLE_SECONDS)  # sampling the server's CPU with the sockets open
            open_rate = (cpu_seconds(server.pid) - open_cpu) / (time.monotonic() - open_from)
            print(f"server CPU with them open, nothing sent: {open_rate * 1000:.0f} ms per second")

            # One event to everyone, --broadcasts times (each once the previous arrived).
            ask(pipes, "reset")
            metrics_before = server_metrics(client, admin)
            sent_before = metrics_before.get("opsflow_ws_messages_sent_total", 0)
            cpu_before, phase_from = cpu_seconds(server.pid), time.monotonic()
            clients_before = clients_cpu(children)
            spread = random.Random(1)
            for n in range(1, args.broadcasts + 1):
                # A pause of up to a second first, so a commit can fall anywhere within the
                # server's poll interval, not always right after the round that relayed the
                # previous event.
                time.sleep(spread.uniform(0, 1))  # spacing the broadcasts
                asyncio.run(source.run(1, 1))
                deadline = time.monotonic() + 60
                while True:
                    hist, received, still_open, closed = merged(ask(pipes, "report"))
                    if received >= n * still_open or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)  # polling the clients for what arrived
            cpu_spent = cpu_seconds(server.pid) - cpu_before
            idle = idle_rate * (time.monotonic() - phase_from)
            idle_open = open_rate * (time.monotonic() - phase_from)
            print(f"broadcast: {received} of {args.broadcasts * still_open} received")
            print(line("broadcast commit -> receipt", hist))
            metrics_after = server_metrics(client, admin)
            sent = metrics_after.get("opsflow_ws_messages_sent_total", 0)
            # The WebSocket counters are each process's own (/metrics answers from one
            # worker): with several, the frames the clients received are counted instead.
            written = sent - sent_before if args.workers == 1 else received
            print(per_frame("broadcast", cpu_spent, written, idle, idle_open))
            print(split("broadcast", metrics_before, metrics_after, hist, received))
            print(client_cost("broadcast", clients_cpu(children) - clients_before, received))

            # A steady stream.
            ask(pipes, "reset")
            if args.stalled:
                ask(pipes, f"stall:{math.ceil(args.stalled / processes)}")
            before_metrics = server_metrics(client, admin)
            cpu_before, phase_from = cpu_seconds(server.pid), time.monotonic()
            clients_before = clients_cpu(children)
            count = int(args.rate * args.duration)
            start = time.monotonic()
            late = asyncio.run(source.run(args.rate, count))
            sent_in = time.monotonic() - start
            deadline = time.monotonic() + 30
            while True:
                reports = ask(pipes, "report")
                hist, received, still_open, closed = merged(reports)
                reading = still_open - sum(r["stalled"] for r in reports)
                if received >= count * reading or time.monotonic() > deadline:
                    break
                time.sleep(0.5)  # polling the clients for what arrived
            cpu_spent = cpu_seconds(server.pid) - cpu_before
            idle = idle_rate * (time.monotonic() - phase_from)
            idle_open = open_rate * (time.monotonic() - phase_from)
            after_metrics = server_metrics(client, admin)
            print(
                f"steady: {count} events in {sent_in:.1f} s ({count / sent_in:.0f}/s achieved, "
                f"the last answered {late * 1000:.0f} ms after the schedule's end)"
            )
            print(
                f"steady: {received} frames received, {count * opened} expected for "
                f"{opened} connections; {still_open} still open ({still_open - reading} of them "
                f"stalled); closed by code {dict(closed)}"
            )
            print(line("steady commit -> receipt", hist))
            delta = {k: after_metrics.get(k, 0) - before_metrics.get(k, 0) for k in after_metrics}
            print(f"server metrics during the steady phase: {delta}")
            frames = delta.get("opsflow_ws_messages_sent_total", 0)
            if args.workers > 1:
                frames = received
            print(per_frame("steady", cpu_spent, frames, idle, idle_open))
            print(split("steady", before_metrics, after_metrics, hist, received))
            print(client_cost("steady", clients_cpu(children) - clients_before, received))
            print(
                f"server RSS at the end: {rss_mib(server.pid):.1f} MiB "
                f"(peak {rss_mib(server.pid, 'VmHWM'):.1f} MiB)"
            )
            print(f"order: {order_problems(ask(pipes, 'report'))}")
            print(f"load average at the end: {load_average()}")
            # Stopping the server with every socket still open (clients reading).
            stopping = time.monotonic()
            server.terminate()
            try:
                server.wait(timeout=120)
                print(
                    f"server stopped (SIGTERM) with {still_open} sockets open in "
                    f"{time.monotonic() - stopping:.1f} s"
                )
            except subprocess.TimeoutExpired:
                print(f"server still running 120 s after SIGTERM with {still_open} sockets open")
            ask(pipes, "stop")
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
        if engine is not None:
            engine.terminate()
            engine.wait(timeout=30)
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
