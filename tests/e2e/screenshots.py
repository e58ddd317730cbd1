"""Screenshots of the dashboard's main pages for docs/ (not a test).

    .venv/bin/python -m tests.e2e.screenshots docs/screenshots

Serves a throw-away SQLite installation with `opsflow serve`, fills it with a few tasks
through the API, and saves PNGs taken by the system Chromium.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from opsflow import schema
from tests.processes import opsflow_serve

PASSWORD = "Shots-Admin-Pass-1"
TASKS = [
    ("Checkout API returns 502 for EU customers", "INCIDENT", "CRITICAL", "ENTERPRISE", 60),
    ("Payment webhook retries piling up", "INCIDENT", "HIGH", "PREMIUM", 240),
    ("Rotate the TLS certificate of status page", "TASK", "MEDIUM", "STANDARD", None),
    ("Disk usage above 85 % on db-3", "INCIDENT", "HIGH", "STANDARD", 2),
    ("Update on-call runbook for Redis failover", "TASK", "LOW", "BASIC", None),
]


def main(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        url = f"sqlite+aiosqlite:///{work / 'shots.db'}"
        schema.upgrade(url)
        with (
            opsflow_serve(work, url, PASSWORD) as base,
            httpx.Client(base_url=f"{base}/api/v1", timeout=30) as http,
            sync_playwright() as pw,
        ):
            token = http.post("/auth/login", json={"username": "admin", "password": PASSWORD})
            admin = {"Authorization": f"Bearer {token.json()['access_token']}"}
            team = http.post("/teams", json={"name": "Payments"}, headers=admin).json()
            ids = []
            for title, kind, priority, tier, start in TASKS:
                body = {
                    "title": title,
                    "task_type": kind,
                    "priority": priority,
                    "customer_tier": tier,
                    "team_id": team["id"],
                    "tags": ["eu-west"] if kind == "INCIDENT" else [],
                }
                if start:
                    body["start_sla_minutes"] = start
                ids.append(http.post("/tasks", json=body, headers=admin).json()["id"])
            http.patch(f"/tasks/{ids[1]}/acknowledge", json={}, headers=admin)
            http.post(
                f"/tasks/{ids[0]}/comments",
                json={"body": "Rolled back **checkout v2.14**; error rate falling."},
                headers=admin,
            )
            http.post(
                f"/tasks/{ids[0]}/comments",
                json={"body": "Customer list in the `#inc-502` channel.", "internal": True},
                headers=admin,
            )
            http.post(
                "/escalation-policies",
                json={
                    "name": "incident-breach",
                    "description": "Team lead first, then the manager",
                    "trigger": "breach",
                    "conditions": {"task_type": ["INCIDENT"]},
                    "steps": [
                        {"delay_minutes": 0, "targets": ["team_lead"], "channels": ["email"]},
                        {
                            "delay_minutes": 15,
                            "targets": ["manager"],
                            "channels": ["email", "slack"],
                        },
                    ],
                    "repeat": 1,
                    "repeat_interval_minutes": 30,
                },
                headers=admin,
            )
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium")
            for width, pages in (
                (1280, ["dashboard", "tasks", "task", "reports", "admin-escalation"]),
                (390, ["tasks"]),
            ):
                page = browser.new_page(base_url=base, viewport={"width": width, "height": 860})
                page.goto("/")
                page.get_by_label("Username or e-mail").fill("admin")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Log in").click()
                page.locator("#live-status[data-state=live]").wait_for()
                for name in pages:
                    hash_ = {
                        "task": f"#/tasks/{ids[0]}",
                        "admin-escalation": "#/admin?section=escalation",
                    }.get(name, f"#/{name}")
                    page.goto(f"/{hash_}")
                    page.wait_for_load_state("networkidle")
                    page.wait_for_timeout(300)  # the list's fade-in highlight
                    suffix = "" if width == 1280 else f"-{width}"
                    page.screenshot(path=str(target / f"{name}{suffix}.png"), full_page=True)
                page.close()
            browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
