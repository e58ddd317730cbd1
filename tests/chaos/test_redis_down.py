"""Redis stopped while two API instances configured with it serve (a throw-away Redis).

Two `opsflow serve --no-engine` instances and one `opsflow engine --passes all` process use
a Redis of this test for the WebSocket fan-out. A client on instance 2 subscribes to a
task's channel; Redis is killed; for a few seconds reads and writes go to both instances
and every one of them is answered 2xx; Redis comes back (same port, empty). An update made
after that reaches the subscribed client — the fan-out resumed by itself — and the client
has every event of the channel the outbox holds, in order, once (the outage's own updates
included: the instance fills gaps from the outbox).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.api.ws_support import SocketClient
from tests.chaos.conftest import Database, Process, Serve, login, process_env, processes
from tests.factories import make_task
from tests.processes import redis_server

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.postgres]

OUTAGE_SECONDS = 3.0  # how long Redis stays away while requests are made


async def _rename(client: httpx.AsyncClient, headers: dict[str, str], task: str, title: str) -> int:
    current = await client.get(f"/tasks/{task}", headers=headers)
    if current.status_code != 200:
        return current.status_code
    response = await client.patch(
        f"/tasks/{task}",
        json={"title": title},
        headers={**headers, "If-Match": current.headers["ETag"]},
    )
    return response.status_code


async def test_api_serves_without_redis_and_fan_out_resumes(
    chaos_db: Database, tmp_path: Path
) -> None:
    with contextlib.ExitStack() as stack, processes() as started:
        redis = stack.enter_context(redis_server(tmp_path))
        env = {"REDIS_URL": redis.url(0)}
        apis = [Serve(tmp_path, f"serve-{n}", chaos_db.url, **env) for n in (1, 2)]
        engine = Process(
            tmp_path,
            "engine",
            ["engine", "--passes", "all", "--interval", "0.1"],
            process_env(chaos_db.url, **env),
        )
        started.extend([*apis, engine])
        for api in apis:
            api.start()
        engine.start()
        admin = await login(apis[0].base)
        clients = [httpx.AsyncClient(base_url=f"{api.base}/api/v1", timeout=30) for api in apis]
        async with clients[0], clients[1]:
            task = (await make_task(clients[0], admin))["id"]
            ws_url = apis[1].base.replace("http://", "ws://") + "/api/v1/ws"
            token = admin["Authorization"].removeprefix("Bearer ")
            async with SocketClient(ws_url, token) as ws:
                await ws.subscribe([f"task:{task}"], since=0)
                await ws.wait_for(lambda f: f.get("type") == "task.created")

                redis.stop()
                answers: Counter[tuple[str, int]] = Counter()
                until = time.monotonic() + OUTAGE_SECONDS
                turn = 0
                while time.monotonic() < until:
                    client = clients[turn % 2]
                    turn += 1
                    read = await client.get("/tasks", headers=admin)
                    answers["read", read.status_code] += 1
                    created = await client.post(
                        "/tasks", json={"title": f"outage-{turn}"}, headers=admin
                    )
                    answers["create", created.status_code] += 1
                    status = await _rename(client, admin, task, f"outage-{turn}")
                    answers["update", status] += 1
                redis.start()
                back = time.monotonic()

                assert await _rename(clients[0], admin, task, "after-redis") == 200
                await ws.wait_for(
                    lambda f: (
                        f.get("type") == "task.updated" and f["task"].get("title") == "after-redis"
                    )
                )
                resumed = time.monotonic() - back
                await ws.settle()
                seen = [(int(f["id"]), str(f["type"])) for f in ws.events()]

        async with chaos_db.engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT stream_seq, event_type FROM outbox_events WHERE aggregate_id = :task "
                    "AND stream_seq IS NOT NULL ORDER BY stream_seq"
                ),
                {"task": uuid.UUID(task)},
            )
            truth = [(int(r[0]), str(r[1])) for r in rows]

    print(
        f"\nRedis down {OUTAGE_SECONDS:.0f} s: answers {dict(answers)}; after it came back "
        f"the subscribed client had the next update in {resumed:.2f} s; it saw {len(seen)} "
        f"events of the task's channel, the outbox holds {len(truth)}"
    )
    assert answers
    assert all(200 <= status < 300 for _, status in answers), answers
    assert seen == truth  # every event of the channel, in order, once
