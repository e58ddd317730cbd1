"""CPU the outbox relay's notification consumer spends per event, inside one process.

Creates tasks with an assignee through the API (no engines running, so their events wait
in the outbox), starts and completes them, then runs relay passes the way the engine
does and times only the notification consumer (`notifications.service.consume`), per
event type: process CPU milliseconds per event and Python function calls per event (a
deterministic proxy for CPU on a busy machine). The other consumers run as usual
(escalation first), so the consumer sees what it sees in production.

    python bench/notify_consume.py                        # SQLite and PostgreSQL
    python bench/notify_consume.py --database sqlite --tasks 300
    BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/notify_consume.py
    python bench/notify_consume.py --escalation           # + an escalation policy on created
    python bench/notify_consume.py --batch 1              # one event per pass (light load)

Run it against two versions of the code (``PYTHONPATH=<tree>/src``) alternately to
compare them.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from request_cpu import PASSWORD, database, in_process_app
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow import composition, schema
from opsflow.events.relay import Preparer, RelayEngine
from opsflow.models.outbox import OutboxEvent
from opsflow.notifications import service as notifications

_statements: list[str] | None = None  # while the consumer or its preparer runs


@event.listens_for(Engine, "before_cursor_execute")
def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    if _statements is not None:
        _statements.append(statement)


class Timed:
    """The notification consumer, with the CPU and the calls it costs per event type."""

    def __init__(self, calls: bool, dump: str | None = None) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.events: dict[str, int] = defaultdict(int)
        self.statements: dict[str, int] = defaultdict(int)
        self.show = False
        self.count_calls = calls
        self.dump = dump
        self.stats: pstats.Stats | None = None

    def prepared(self, prepare: Preparer) -> Preparer:
        async def timed(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
            global _statements
            profile = cProfile.Profile() if self.count_calls else None
            _statements = []
            started = time.process_time()
            if profile:
                profile.enable()
            try:
                await prepare(session, events)
            finally:
                if profile:
                    profile.disable()
                    self.calls["(prepare)"] += pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
                self.cpu["(prepare)"] += time.process_time() - started
                self.statements["(prepare)"] += len(_statements or [])
                _statements = None

        return timed

    async def __call__(self, session: AsyncSession, event: OutboxEvent, now: datetime) -> None:
        global _statements
        kind = event.event_type
        profile = cProfile.Profile() if self.count_calls else None
        _statements = []
        started = time.process_time()
        if profile:
            profile.enable()
        try:
            await notifications.consume(session, event, now)
        finally:
            if profile:
                profile.disable()
            self.cpu[kind] += time.process_time() - started
            self.events[kind] += 1
            self.statements[kind] += len(_statements)
            if self.show:
                print(kind, *(" ".join(q.split())[:110] for q in _statements), sep="\n    ")
            _statements = None
            if profile:
                stats = pstats.Stats(profile)
                self.calls[kind] += stats.total_calls  # type: ignore[attr-defined]
                if self.dump:
                    if self.stats is None:
                        self.stats = stats
                    else:
                        self.stats.add(stats)


async def relay_all(context: Any, timed: Timed, batch: int) -> None:
    consumers = [timed if c is notifications.consume else c for c in composition.relay_consumers()]
    # The consumer's own preparer (where the version has one) is its cost too.
    ours = getattr(notifications, "prepare", None)
    preparers = [timed.prepared(p) if p is ours else p for p in composition.relay_preparers()]
    relay = RelayEngine(consumers, batch=batch, preparers=preparers)
    while (await relay.run(context, batch=batch)).worked:
        pass


async def measure(url: str, args: argparse.Namespace, kind: str) -> dict[str, tuple[float, float]]:
    app, context, call = in_process_app(url)
    batch = args.batch or (
        composition.SQLITE_RELAY_BATCH if kind == "sqlite" else composition.RELAY_BATCH
    )
    figures: dict[str, tuple[float, float]] = {}
    async with app.router.lifespan_context(app):
        status, body = await call(
            "POST", "/api/v1/auth/login", {"username": "admin", "password": PASSWORD}
        )
        assert status == 200, body
        call.headers = [(b"authorization", f"Bearer {json.loads(body)['access_token']}".encode())]
        status, body = await call(
            "POST",
            "/api/v1/auth/register",
            {"email": "dev@example.com", "username": "dev", "password": PASSWORD},
        )
        assert status == 201, body
        developer = json.loads(body)["id"]
        if args.escalation:
            policy = {
                "name": "bench",
                "trigger": "created",
                "conditions": {"priority": ["HIGH"]},
                "steps": [{"delay_minutes": 0, "targets": ["assignee"], "channels": ["email"]}],
            }
            status, body = await call("POST", "/api/v1/escalation-policies", policy)
            assert status == 201, body
        create = {
            "title": "bench",
            "task_type": "INCIDENT",
            "priority": "HIGH",
            "assigned_to": developer,
        }
        # Rounds of the same work: tasks created with an assignee, started, completed.
        # The first round warms caches and statements and is not counted; the second is
        # timed; the third counts calls (cProfile slows what it watches).
        rounds = [Timed(False), Timed(False)] + ([Timed(True, args.dump)] if args.calls else [])
        rounds[1].show = args.show_statements
        for index, timed in enumerate(rounds):
            ids = []
            for _ in range(args.tasks):
                status, body = await call("POST", "/api/v1/tasks", create)
                assert status == 201, body
                ids.append(json.loads(body)["id"])
            # Relayed after each step, as the engine would (an escalation run is planned
            # only for a task still open when its creation is relayed).
            await relay_all(context, timed, batch)
            for step in ("start", "complete"):
                for task_id in ids:
                    status, body = await call("PATCH", f"/api/v1/tasks/{task_id}/{step}")
                    assert status == 200, (step, body[:300])
                await relay_all(context, timed, batch)
            if timed.stats is not None and args.dump:
                timed.stats.dump_stats(f"{args.dump}.{kind}")
            if index == 0:
                continue
            for event_type, n in sorted(timed.events.items()):
                if timed.count_calls:
                    figures[f"{event_type} calls"] = (timed.calls[event_type] / n, n)
                else:
                    figures[event_type] = (timed.cpu[event_type] * 1000 / n, n)
                    figures[f"{event_type} statements"] = (timed.statements[event_type] / n, n)
            # Every event, the preparer's share included: the figure to compare.
            total = sum(timed.events.values())
            if timed.count_calls:
                figures["all events calls"] = (sum(timed.calls.values()) / total, total)
            else:
                figures["all events"] = (sum(timed.cpu.values()) * 1000 / total, total)
                statements = sum(timed.statements.values())
                figures["all events statements"] = (statements / total, total)
    await context.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("postgresql", "sqlite", "both"), default="both")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument(
        "--batch", type=int, help="events per relay pass (default: the engine's, 500 or 20)"
    )
    parser.add_argument("--escalation", action="store_true", help="with a `created` policy")
    parser.add_argument("--calls", action="store_true", help="also count Python calls per event")
    parser.add_argument("--show-statements", action="store_true", help="print each event's SQL")
    parser.add_argument("--dump", metavar="PREFIX", help="with --calls: pstats to PREFIX.<db>")
    args = parser.parse_args()
    kinds = ("postgresql", "sqlite") if args.database == "both" else (args.database,)
    for kind in kinds:
        with tempfile.TemporaryDirectory() as folder:
            url, drop = database(kind, folder)
            try:
                schema.upgrade(url)
                figures = asyncio.run(measure(url, args, kind))
            finally:
                drop()
        print(f"{kind}: notification consumer per event")
        for name, (value, n) in figures.items():
            unit = name.rsplit(" ", 1)[-1] if name.endswith(("calls", "statements")) else "CPU ms"
            shown = f"{value:.3f}" if unit == "CPU ms" else f"{value:,.1f}"
            print(f"  {name.removesuffix(' ' + unit):20} {shown:>9} {unit:10}  ({n} events)")


if __name__ == "__main__":
    main()
