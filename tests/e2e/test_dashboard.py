"""The web dashboard end to end: a real `opsflow serve` and Debian's headless Chromium driven
by Playwright (the system executable; no browser is ever downloaded).

Two browser contexts are two people: an incident created in one appears in the other without
a reload, is acknowledged and commented on; a viewer finds no action button and no internal
comment; a dropped stream shows "Reconnecting…" and, once back, replays what it missed; a
session survives a reload through the rotating refresh token and ends at logout; and with
every request to another origin refused, no page (dashboard, Swagger UI, ReDoc) fails to load
anything or logs an error.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from opsflow.db import Base, create_engine
from tests.conftest import DatabaseTemplate
from tests.processes import opsflow_serve

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

playwright_sync = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ADMIN_PASSWORD = "Dash-Admin-Pass-1"
PASSWORD = "Dash-User-Pass-1"
# The longest any wait for a page state may take: generous, because the suite shares the
# machine's cores with another test process (a bound on waiting, never a timing check).
TIMEOUT_MS = 60_000


@dataclass
class Site:
    base: str
    http: httpx.Client
    browser: Any
    admin: dict[str, str]
    contexts: list[Any] = field(default_factory=list)

    def page(self, **options: Any) -> Any:
        context = self.browser.new_context(base_url=self.base, **options)
        context.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(context)
        return context.new_page()


def _emptied(url: str) -> str:
    """The session's PostgreSQL test database with every table emptied (as `database_url`
    leaves it for one test), for the module's server."""

    async def run() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
                await connection.execute(text(f"TRUNCATE {tables} CASCADE"))
        finally:
            await engine.dispose()

    asyncio.run(run())
    return url


@pytest.fixture(scope="module")
def site(
    database_template: DatabaseTemplate, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    assert database_template.kind == "postgresql", "the dashboard suite runs on PostgreSQL"
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (apt-get install chromium; .ci/run does)")
    url = _emptied(database_template.url)
    workdir = tmp_path_factory.mktemp("dashboard")
    with (
        # APP_ENV=test: the server's clock moves forward on POST /test/clock.
        opsflow_serve(workdir, url, ADMIN_PASSWORD, APP_ENV="test") as base,
        httpx.Client(base_url=f"{base}/api/v1", timeout=30) as http,
        playwright_sync.sync_playwright() as pw,
    ):
        token = http.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        admin = {"Authorization": f"Bearer {token.json()['access_token']}"}
        team = http.post("/teams", json={"name": "Platform"}, headers=admin).json()
        for username, role in (("maria", "manager"), ("vera", "viewer")):
            created = http.post(
                "/auth/register",
                json={
                    "username": username,
                    "email": f"{username}@example.com",
                    "password": PASSWORD,
                    "role": role,
                    "full_name": username.title(),
                    "team_id": team["id"],
                },
                headers=admin,
            )
            assert created.status_code == 201, created.text
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        site = Site(base, http, browser, admin)
        yield site
        for context in site.contexts:
            context.close()
        browser.close()


@pytest.fixture(autouse=True)
def close_pages(site: Site) -> Iterator[None]:
    """Each test's browser contexts end with it: a user may hold only so many live sockets."""
    yield
    for context in site.contexts:
        context.close()
    site.contexts.clear()


def log_in(page: Any, login: str, password: str = PASSWORD) -> None:
    page.goto("/")
    page.get_by_label("Username or e-mail").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("#live-status[data-state=live]")


def create_incident(site: Site, title: str) -> dict[str, Any]:
    answer = site.http.post(
        "/tasks",
        json={"title": title, "task_type": "INCIDENT", "priority": "HIGH"},
        headers=site.admin,
    )
    assert answer.status_code == 201, answer.text
    task: dict[str, Any] = answer.json()
    return task


def test_incident_appears_live_then_is_acknowledged_and_commented(site: Site) -> None:
    author = site.page()
    log_in(author, "admin", ADMIN_PASSWORD)
    watcher = site.page()
    log_in(watcher, "maria@example.com")  # the e-mail works as the login too
    watcher.get_by_role("link", name="Tasks", exact=True).click()
    watcher.wait_for_selector("#task-list")

    author.get_by_role("link", name="New task").click()
    author.get_by_label("Title").fill("Checkout is down")
    author.get_by_label("Type").select_option("INCIDENT")
    author.get_by_label("Priority").select_option("CRITICAL")
    author.get_by_role("button", name="Create").click()
    author.wait_for_url(re.compile(r"#/tasks/[0-9a-f-]{36}$"))
    author.get_by_role("heading", name="Checkout is down").wait_for()

    # The second person's list shows it without a reload.
    url_before = watcher.url
    row = watcher.locator("tr.task-row", has_text="Checkout is down")
    row.wait_for()
    assert watcher.url == url_before
    assert "sla-" in (row.locator(".badge").last.get_attribute("class") or "")
    row.get_by_role("link").click()

    watcher.get_by_role("button", name="Acknowledge").click()
    watcher.get_by_role("button", name="Start").wait_for()
    watcher.locator("button[data-action=acknowledge]").wait_for(state="detached")
    # The author's detail page follows live: the acknowledgement shows up in its timeline.
    author.locator(".timeline li.kind-status").first.wait_for()
    # A draft the author is typing survives the live re-renders that follow.
    author.get_by_label("Add a comment (Markdown)").fill("Draft the author is still typing")

    watcher.get_by_label("Add a comment (Markdown)").fill(
        "Rolled back **v2**, see [runbook](https://runbooks.example.com/x) <script>bad()</script>"
    )
    watcher.get_by_role("button", name="Comment").click()
    comment = watcher.locator(".comment").first
    comment.locator("strong", has_text="v2").wait_for()
    assert comment.locator("a").get_attribute("href") == "https://runbooks.example.com/x"
    assert comment.locator("script").count() == 0
    assert "<script>bad()</script>" in comment.inner_text()
    watcher.get_by_label("Add a comment (Markdown)").fill("Customer data involved")
    watcher.get_by_label("Internal (hidden from viewers)").check()
    watcher.get_by_role("button", name="Comment").click()
    watcher.locator(".comment.internal").wait_for()
    author.locator(".comment.internal", has_text="Customer data involved").wait_for()
    draft = author.get_by_label("Add a comment (Markdown)").input_value()
    assert draft == "Draft the author is still typing"

    # The list URL holds the filters: opening it anew shows the same view.
    watcher.goto("/#/tasks?task_type=INCIDENT&priority=CRITICAL&status=ASSIGNED")
    watcher.locator("tr.task-row", has_text="Checkout is down").wait_for()
    assert watcher.locator("#f-task_type").input_value() == "INCIDENT"
    watcher.goto("/#/tasks?priority=LOW")
    watcher.get_by_text("No task matches these filters.").wait_for()


def test_viewer_sees_no_actions_and_no_internal_comments(site: Site) -> None:
    task = create_incident(site, "Disk almost full")
    for body, internal in (("Public note", False), ("Secret note", True)):
        answer = site.http.post(
            f"/tasks/{task['id']}/comments",
            json={"body": body, "internal": internal},
            headers=site.admin,
        )
        assert answer.status_code == 201, answer.text
    viewer = site.page()
    log_in(viewer, "vera")
    assert viewer.get_by_role("link", name="New task").count() == 0
    viewer.goto(f"/#/tasks/{task['id']}")
    viewer.locator(".comment", has_text="Public note").wait_for()
    assert viewer.locator("[data-action]").count() == 0
    assert viewer.locator(".actions button").count() == 0
    assert viewer.get_by_text("Secret note").count() == 0
    assert viewer.locator(".comment.internal").count() == 0
    assert viewer.locator("#comment-body").count() == 0


def test_dropped_stream_reconnects_and_replays(site: Site) -> None:
    sockets: list[Any] = []
    subscribes: list[str] = []
    refuse = {"on": False}

    def handle(ws: Any) -> None:
        if refuse["on"]:
            ws.close(code=1011, reason="test: server unreachable")
            return
        server = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            if isinstance(message, str) and '"subscribe"' in message:
                subscribes.append(message)
            server.send(message)

        ws.on_message(to_server)
        sockets.append(ws)

    page = site.page()
    page.route_web_socket(re.compile(r".*/api/v1/ws$"), handle)
    log_in(page, "admin", ADMIN_PASSWORD)
    page.goto("/#/tasks")
    first = create_incident(site, "Before the drop")
    page.locator("tr.task-row", has_text="Before the drop").wait_for()

    refuse["on"] = True
    sockets[-1].close(code=1012, reason="test: connection dropped")
    page.locator("#live-status[data-state=reconnecting]", has_text="Reconnecting").wait_for()
    create_incident(site, "During the drop")
    assert page.locator("tr.task-row", has_text="During the drop").count() == 0
    refuse["on"] = False
    page.locator("#live-status[data-state=live]").wait_for()
    page.locator("tr.task-row", has_text="During the drop").wait_for()
    assert '"since"' in subscribes[-1], subscribes
    assert first["id"]


def test_session_refreshes_silently_and_logout_ends_it(site: Site) -> None:
    page = site.page()
    log_in(page, "maria")
    before = page.evaluate("JSON.parse(localStorage.getItem('opsflow.session'))")
    # The access token is taken as expired: the reload must rotate the refresh token.
    page.evaluate(
        "() => { const s = JSON.parse(localStorage.getItem('opsflow.session'));"
        " s.accessExp = 0; localStorage.setItem('opsflow.session', JSON.stringify(s)); }"
    )
    page.reload()
    page.wait_for_selector("#live-status[data-state=live]")
    after = page.evaluate("JSON.parse(localStorage.getItem('opsflow.session'))")
    assert after["refresh"] != before["refresh"]
    assert after["access"] != before["access"]
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").wait_for()
    assert page.evaluate("localStorage.getItem('opsflow.session')") is None
    ended = site.http.post("/auth/refresh", json={"refresh_token": after["refresh"]})
    assert ended.status_code == 401


def test_nothing_leaves_the_origin(site: Site) -> None:
    task = create_incident(site, "Offline check")
    page = site.page()
    origin = site.base
    outside: list[str] = []
    problems: list[str] = []

    def only_origin(route: Any) -> None:
        if route.request.url.startswith(origin):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.context.route("**/*", only_origin)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    log_in(page, "admin", ADMIN_PASSWORD)
    page.goto(f"/#/tasks/{task['id']}")
    page.get_by_role("heading", name="Offline check").wait_for()
    page.goto("/#/tasks?status=CREATED&sort=priority")
    page.locator("tr.task-row").first.wait_for()

    docs = page.goto("/api/v1/docs")
    assert docs is not None
    csp = docs.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    page.locator(".swagger-ui .opblock").first.wait_for()
    redoc = page.goto("/api/v1/redoc")
    assert redoc is not None
    assert "script-src 'self';" in redoc.headers["content-security-policy"]
    page.locator("[role=navigation], .api-content").first.wait_for()
    page.get_by_text("OpsFlow").first.wait_for()
    assert outside == []
    assert problems == []


def test_upload_progress_reaches_100_percent(site: Site, tmp_path: Path) -> None:
    task = create_incident(site, "Core dump to look at")
    page = site.page()
    log_in(page, "admin", ADMIN_PASSWORD)
    page.goto(f"/#/tasks/{task['id']}")
    payload = bytes(range(256)) * (5 * 1024 * 1024 // 256)  # 5 MiB
    page.get_by_label("Attach a file").set_input_files(
        {"name": "core.bin", "mimeType": "application/octet-stream", "buffer": payload}
    )
    page.get_by_role("button", name="Upload").click()
    page.locator("#upload-percent", has_text="100 %").wait_for()
    assert page.locator("#upload-progress").evaluate("p => p.value") == 100
    page.locator("#attachment-list li", has_text="core.bin").wait_for()
    listed = site.http.get(f"/tasks/{task['id']}/attachments", headers=site.admin).json()
    assert [(a["filename"], a["size"]) for a in listed["items"]] == [("core.bin", len(payload))]


def test_dashboard_counts_follow_the_stream_and_reports_draw_charts(site: Site) -> None:
    page = site.page()
    log_in(page, "admin", ADMIN_PASSWORD)
    page.goto("/#/dashboard")
    active = page.locator("#stat-active .value")
    active.wait_for()
    before = int(active.inner_text())
    url = page.url
    create_incident(site, "Counted live")
    page.locator("#stat-active .value", has_text=str(before + 1)).wait_for()
    assert page.url == url
    countdown = page.locator(".countdown").first
    countdown.wait_for()
    first = countdown.inner_text()
    page.wait_for_function(  # the countdown ticks in the browser (polled, not timed)
        "t => document.querySelector('.countdown').textContent !== t", arg=first
    )

    page.get_by_role("link", name="Reports").click()
    page.locator("#chart-compliance circle").first.wait_for()
    assert page.locator("#chart-priority rect").count() == 4
    assert page.locator("#chart-mttr rect").count() == 2
    assert page.locator("#chart-tier rect").count() >= 1
    assert "SLA compliance over time" in (
        page.locator("#chart-compliance").get_attribute("aria-label") or ""
    )
    with page.expect_download() as download:
        page.get_by_role("button", name="CSV: sla-summary.csv").click()
    assert download.value.suggested_filename == "sla-summary.csv"


AXE = Path(__file__).parent / "vendor" / "axe.min.js"


@pytest.mark.parametrize("width", [1280, 390])
def test_pages_have_no_serious_accessibility_violations_and_fit(site: Site, width: int) -> None:
    task = create_incident(site, f"Accessible at {width} px")
    site.http.post(
        f"/tasks/{task['id']}/comments",
        json={"body": "A **note** with `code`", "internal": True},
        headers=site.admin,
    )
    # axe-core is injected as a script of the test: only this context lifts the page policy.
    page = site.page(viewport={"width": width, "height": 900}, bypass_csp=True)
    found: dict[str, list[str]] = {}

    def audit(name: str) -> None:
        page.add_script_tag(path=str(AXE))
        result = page.evaluate("async () => (await axe.run(document)).violations")
        serious = [
            f"{v['id']}: {[n['target'] for n in v['nodes']][:3]}"
            for v in result
            if v["impact"] in {"serious", "critical"}
        ]
        if serious:
            found[name] = serious
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, f"{name} is {overflow} px wide at {width} px"

    page.goto("/")
    page.get_by_role("button", name="Log in").wait_for()
    audit("login")
    page.get_by_label("Username or e-mail").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.locator("#stat-active").wait_for()
    audit("dashboard")
    page.goto("/#/tasks?status=CREATED")
    page.locator("tr.task-row").first.wait_for()
    audit("tasks")
    page.goto(f"/#/tasks/{task['id']}")
    page.locator(".comment.internal").wait_for()
    audit("task")
    page.goto("/#/reports")
    page.locator("#chart-priority").wait_for()
    audit("reports")
    page.goto("/#/new")
    page.get_by_label("Title").wait_for()
    audit("new task")
    page.goto("/#/admin?section=users")
    page.locator("tr[data-user=admin]").wait_for()
    audit("admin: users")
    page.goto("/#/admin?section=sla")
    page.get_by_role("button", name="Simulate").click()
    page.locator("#simulation li").first.wait_for()
    audit("admin: sla")
    for section, ready in (
        ("calendars", "Calendar name"),
        ("escalation", "Escalation policy name"),
        ("heartbeats", "Monitor name"),
    ):
        page.goto(f"/#/admin?section={section}")
        page.get_by_label(ready).wait_for()
        audit(f"admin: {section}")
    assert found == {}


def test_admin_pages(site: Site) -> None:
    page = site.page()
    log_in(page, "admin", ADMIN_PASSWORD)
    page.get_by_role("link", name="Admin").click()
    page.locator("tr[data-user=vera]").wait_for()
    page.get_by_label("Username").fill("nadia")
    page.get_by_label("E-mail").fill("nadia@example.com")
    page.get_by_label("Role").select_option("support")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create user").click()
    page.locator("tr[data-user=nadia]").wait_for()
    page.get_by_role("button", name="Deactivate nadia").click()
    page.locator("tr[data-user=nadia]", has_text="deactivated").wait_for()
    page.get_by_label("Team name").fill("Storage")
    page.get_by_role("button", name="Create team").click()
    page.get_by_role("cell", name="Storage", exact=True).wait_for()

    page.get_by_role("link", name="Integrations").click()
    page.get_by_role("heading", name="Alert integrations").wait_for()
    page.get_by_label("Name", exact=True).fill("Prod Alertmanager")
    page.get_by_role("button", name="Create integration").click()
    url = page.locator("#integration-key code.url").first
    url.wait_for()
    inbound = url.inner_text()
    assert inbound.startswith(f"{site.base}/api/v1/integrations/"), inbound
    alert = {
        "version": "4",
        "status": "firing",
        "receiver": "opsflow",
        "groupKey": '{}:{alertname="DiskFull"}',
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "DiskFull", "severity": "critical"},
                "annotations": {"summary": "Disk full on db-9"},
                "startsAt": "2026-01-01T00:00:00Z",
                "fingerprint": "abc123",
            }
        ],
    }
    shown = page.locator("#integration-key code.url").all_inner_texts()
    target = next(u for u in shown if u.endswith("/alertmanager"))
    sent = httpx.post(target, json=alert, timeout=30)
    assert sent.status_code < 300, sent.text  # the URL shown works as pasted

    page.get_by_role("link", name="SLA policies").click()
    page.get_by_role("heading", name="SLA policies").wait_for()
    page.get_by_label("Priority", exact=True).select_option("CRITICAL")
    page.get_by_role("button", name="Simulate").click()
    timeline = page.locator("#simulation li")
    timeline.first.wait_for()
    assert "response warning" in timeline.first.inner_text()
    assert page.locator("svg[aria-label^='Simulated timeline'] circle").count() >= 6

    page.get_by_role("link", name="Dead letters").click()
    page.get_by_role("heading", name=re.compile("Notification dead letters")).wait_for()


def test_configuration_pages_create_and_edit(site: Site) -> None:
    """Calendars, SLA policies, escalation policies and heartbeat monitors are created, edited
    (and a policy deleted) through their admin pages; a viewer reads monitors, changes nothing."""
    page = site.page()
    log_in(page, "admin", ADMIN_PASSWORD)
    page.goto("/#/admin?section=calendars")
    page.get_by_label("Calendar name").fill("ops-hours")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_label("Holidays").fill("2026-12-25")
    page.get_by_role("button", name="Create calendar").click()
    page.locator("tr[data-calendar=ops-hours]", has_text="Europe/Berlin").wait_for()
    page.get_by_role("button", name="Edit ops-hours").click()
    page.get_by_label("Time zone").fill("Europe/Paris")
    page.get_by_label("Time zone").press("Enter")  # the keyboard submits the form
    page.locator("tr[data-calendar=ops-hours]", has_text="Europe/Paris").wait_for()

    page.get_by_role("link", name="SLA policies").click()
    page.get_by_label("Policy name").fill("e2e-tasks")
    page.get_by_label("Applies to task type").select_option("TASK")
    page.get_by_label("Applies to priority").select_option("LOW")
    page.get_by_label("Applies to customer tier").select_option("PREMIUM")
    page.get_by_label("Response target (minutes)").fill("30")
    page.get_by_label("Resolution target (minutes)").fill("240")
    page.get_by_label("Business calendar").select_option("ops-hours")
    page.get_by_label("Escalation levels").fill("1: 60")
    page.get_by_role("button", name="Create SLA policy").click()
    row = page.locator("tr[data-sla-policy=e2e-tasks]")
    row.filter(has_text="level 1 at 60 min").wait_for()
    assert "ops-hours" in row.inner_text()
    page.get_by_role("button", name="Edit e2e-tasks").click()
    page.get_by_label("Response target (minutes)").fill("45")
    page.get_by_role("button", name="Save SLA policy").click()
    row.filter(has_text="45 / 240 min").wait_for()
    page.get_by_role("button", name="Delete e2e-tasks").click()
    page.get_by_role("button", name="Confirm delete e2e-tasks").click()
    row.wait_for(state="detached")

    page.get_by_role("link", name="Escalation policies").click()
    page.get_by_label("Escalation policy name").fill("e2e-page")
    page.get_by_label("Starts when").select_option("warning")
    page.get_by_label("Only priorities").fill("critical")
    steps = "0 | team_lead | email\n15 | manager | email, slack"
    page.get_by_label("Steps", exact=True).fill(steps)
    page.get_by_role("button", name="Create escalation policy").click()
    row = page.locator("tr[data-escalation=e2e-page]")
    row.filter(has_text="after 15 min → manager (email, slack)").wait_for()
    assert "priority: CRITICAL" in row.inner_text()
    page.get_by_role("button", name="Edit e2e-page").click()
    page.get_by_label("Repeat the steps (times)").fill("1")
    page.get_by_label("Repeat every (minutes)").fill("30")
    page.get_by_role("button", name="Save escalation policy").click()
    row.filter(has_text="1 more, every 30 min").wait_for()

    page.get_by_role("link", name="Heartbeat monitors").click()
    page.get_by_label("Monitor name").fill("nightly-backup")
    page.get_by_label("Cron schedule").fill("0 3 * * *")
    page.get_by_role("button", name="Create monitor").click()
    row = page.locator("tr[data-monitor=nightly-backup]")
    row.locator("code.url").wait_for()
    page.get_by_role("button", name="Edit nightly-backup").click()
    page.get_by_label("Grace (seconds)").fill("600")
    page.get_by_role("button", name="Save monitor").click()
    row.filter(has_text="600 s").wait_for()

    # A viewer reads the monitors and finds nothing to change, and no SLA configuration.
    viewer = site.page()
    log_in(viewer, "vera@example.com")
    viewer.goto("/#/admin?section=heartbeats")
    viewer.locator("tr[data-monitor=nightly-backup]").wait_for()
    assert viewer.get_by_role("button", name=re.compile("^(Edit|Delete) ")).count() == 0
    assert viewer.locator("#monitor-form").count() == 0
    assert viewer.get_by_role("link", name="SLA policies").count() == 0


def test_sla_warning_arrives_live_when_the_test_clock_moves(site: Site) -> None:
    """Last in the module: it moves the server's clock forward for good."""
    policy = site.http.post(
        "/sla-policies",
        json={
            "name": "e2e-short",
            "task_type": "INCIDENT",
            "priority": "LOW",
            "customer_tier": "BASIC",
            "start_minutes": 10,
            "resolve_minutes": 60,
            "thresholds": [50, 90],
        },
        headers=site.admin,
    )
    assert policy.status_code == 201, policy.text
    board = site.page()
    log_in(board, "admin", ADMIN_PASSWORD)
    board.goto("/#/dashboard")
    board.locator("#stat-active .value").wait_for()
    task = site.http.post(
        "/tasks",
        json={
            "title": "Short fuse",
            "task_type": "INCIDENT",
            "priority": "LOW",
            "customer_tier": "BASIC",
        },
        headers=site.admin,
    ).json()
    detail = site.page()
    log_in(detail, "maria@example.com")
    detail.goto(f"/#/tasks/{task['id']}")
    detail.locator("h1 .badge.sla-compliant").wait_for()
    risk = board.locator(f"li.risk[data-task-id='{task['id']}']")
    assert risk.count() == 0

    # Past the response warning (50 % of 10 minutes): the engine fires it, the stream carries
    # it, and both pages show it without a reload.
    moved = site.http.post("/test/clock", json={"advance_seconds": 330}, headers=site.admin)
    assert moved.status_code == 200, moved.text
    url = board.url
    risk.locator(".badge.sla-warning").wait_for()
    risk.locator(".countdown", has_text="response critical in").wait_for()
    detail.locator("h1 .badge.sla-warning").wait_for()
    assert board.url == url
