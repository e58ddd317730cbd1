"""The SLA engine in real time: a real `opsflow serve` (embedded SQLite, embedded engine),
a CRITICAL incident with 1-minute response and 2-minute resolution targets, left untouched.

Prints each SLA event as the API first shows it: START_WARNING at 45 s, START_CRITICAL at
57 s, START_BREACH at 60 s, then the same for RESOLVE at 90 / 114 / 120 s — each once —
with its lateness (triggered_at - due_at, as stored) and when the poll saw it. Ends after
RESOLVE_BREACH (about two minutes) and checks the audit log holds one row per event.

    python bench/sla_realtime.py [--engine-interval 1.0] [--database-url URL]

Figures are printed, never asserted beyond "each event once".
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime

import httpx
from _serve import start_server

PASSWORD = "Realtime-Demo-123"
EXPECTED = [
    ("START_WARNING", 45),
    ("START_CRITICAL", 57),
    ("START_BREACH", 60),
    ("RESOLVE_WARNING", 90),
    ("RESOLVE_CRITICAL", 114),
    ("RESOLVE_BREACH", 120),
]


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine-interval", type=float, default=1.0)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="opsflow-realtime-")
    env = {
        "OPSFLOW_ADMIN_PASSWORD": PASSWORD,
        "OPSFLOW_ENGINE_INTERVAL_SECONDS": str(args.engine_interval),
    }
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    server, root = start_server(workdir, env)
    base = f"{root}/api/v1"
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            token = client.post(
                "/auth/login", json={"username": "admin", "password": PASSWORD}
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            created = client.post(
                "/tasks",
                json={
                    "title": "Realtime SLA demo",
                    "task_type": "INCIDENT",
                    "priority": "CRITICAL",
                    "start_sla_minutes": 1,
                    "resolve_sla_minutes": 2,
                },
                headers=headers,
            ).json()
            task_id, created_at = created["id"], parse(created["created_at"])
            print(f"task {task_id} created at {created_at:%H:%M:%S.%f} (1 / 2 minute targets)")
            print(f"{'event':>17} {'due +s':>7} {'lateness ms':>12} {'seen +s':>8}")
            seen: dict[str, dict[str, object]] = {}
            while len(seen) < len(EXPECTED):
                if (datetime.now(UTC) - created_at).total_seconds() > 180:
                    print("!! not every event arrived within 180 s")
                    return 1
                events = client.get(f"/tasks/{task_id}/sla-events", headers=headers).json()
                for event in events["events"]:
                    name = str(event["event_type"])
                    if name in seen:
                        continue
                    seen[name] = event
                    due = parse(event["due_at"])
                    lateness = (parse(event["triggered_at"]) - due).total_seconds() * 1000
                    print(
                        f"{name:>17} {(due - created_at).total_seconds():>7.1f} "
                        f"{lateness:>12.0f} "
                        f"{(datetime.now(UTC) - created_at).total_seconds():>8.1f}"
                    )
                time.sleep(0.25)  # polling the API for what the engine wrote
            events = client.get(f"/tasks/{task_id}/sla-events", headers=headers).json()
            names = [e["event_type"] for e in events["events"]]
            audit = client.get(
                "/audit-logs",
                params={"entity_id": task_id, "page_size": 100},
                headers=headers,
            ).json()["items"]
            sla_rows = [row for row in audit if str(row["action"]).startswith("SLA_")]
            print(f"events: {len(names)} ({len(set(names))} distinct); audit rows: {len(sla_rows)}")
            ok = sorted(names) == sorted(n for n, _ in EXPECTED) and len(sla_rows) == len(names)
            print("each threshold fired exactly once" if ok else "!! unexpected events")
            return 0 if ok else 1
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
