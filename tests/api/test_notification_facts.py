"""What a person reads in a notification: real events, rendered end to end into a real SMTP
server and a Slack sink, state the right facts (assignee by name, type, priority, deadline,
a link to the task), and no built-in template leaves a value empty."""

from __future__ import annotations

from typing import Any

import httpx
import jinja2
import pytest
from sqlalchemy import select

from opsflow.clock import SettableClock
from opsflow.config import Settings
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.models.enums import Channel
from opsflow.models.outbox import OutboxEvent
from opsflow.models.user import User
from opsflow.notifications.facts import message_context
from opsflow.notifications.sandbox import Mode, SandboxedEnvironment
from opsflow.notifications.templates import NotificationTemplates
from tests.conftest import delivery_settings
from tests.factories import at, make_team, make_user
from tests.sinks import HttpSink, Received, SmtpSink

PUBLIC_URL = "https://ops.example.test"
BREACH_POLICY = {
    "name": "critical-breach",
    "conditions": {"priority": ["CRITICAL"]},
    "trigger": "breach",
    "steps": [
        {"delay_minutes": 0, "targets": ["assignee"], "channels": ["email"]},
        {"delay_minutes": 5, "targets": ["team_lead"], "channels": ["slack", "email"]},
    ],
}
INCIDENT = {
    "title": "Checkout latency over 5 s",
    "task_type": "INCIDENT",
    "priority": "CRITICAL",
    "start_sla_minutes": 15,
    "resolve_sla_minutes": 120,
}


@pytest.fixture
def settings(database_url: str, smtp: tuple[SmtpSink, int], slack: HttpSink) -> Settings:
    return delivery_settings(database_url, smtp, slack, public_url=PUBLIC_URL + "/")


async def _world(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    team_id = await make_team(client, admin)
    lead = await make_user(client, admin, "team_lead", username="lena-lead", team_id=team_id)
    developer = await make_user(
        client, admin, "developer", username="dana-developer", team_id=team_id
    )
    response = await client.patch(f"/teams/{team_id}", json={"lead_id": lead.id}, headers=admin)
    assert response.status_code == 200, response.text
    created = await client.post("/escalation-policies", json=BREACH_POLICY, headers=admin)
    assert created.status_code == 201, created.text
    task = await client.post(
        "/tasks", json={**INCIDENT, "assigned_to": developer.id, "team_id": team_id}, headers=admin
    )
    assert task.status_code == 201, task.text
    # Matches no escalation policy: its breach is the built-in "SLA Breach" mail.
    other = await client.post(
        "/tasks",
        json={
            **INCIDENT,
            "title": "Search index is stale",
            "priority": "HIGH",
            "start_sla_minutes": 30,
            "assigned_to": developer.id,
            "team_id": team_id,
        },
        headers=admin,
    )
    assert other.status_code == 201, other.text
    return {
        "lead": lead,
        "developer": developer,
        "task_id": task.json()["id"],
        "other_id": other.json()["id"],
    }


def _mail(sink: SmtpSink, to: str, subject: str) -> tuple[str, str]:
    found = [
        r
        for r in sink.received
        if to in r.rcpt_tos and str(r.message["Subject"]).startswith(subject)
    ]
    assert len(found) == 1, [(r.rcpt_tos, r.message["Subject"]) for r in sink.received]
    return str(found[0].message["Subject"]), _text(found[0])


def _text(received: Received) -> str:
    part = received.message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _has_facts(body: str, **facts: str) -> None:
    for label, value in facts.items():
        line = f"{label.replace('_', ' ').capitalize()}:"
        assert any(
            row.startswith(line) and row.removeprefix(line).strip() == value
            for row in body.splitlines()
        ), (label, value, body)


async def test_each_mail_states_assignee_type_priority_deadline_and_link(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
    smtp: tuple[SmtpSink, int],
    slack: HttpSink,
    hooks: HttpSink,
) -> None:
    sink = smtp[0]
    subscribed = await client.post(
        "/webhooks",
        json={"name": "bridge", "url": f"{hooks.url}/in", "event_types": ["sla.*", "escalation.*"]},
        headers=admin_headers,
    )
    assert subscribed.status_code == 201, subscribed.text
    world = await _world(client, admin_headers)
    dana, lena = "dana-developer@example.com", "lena-lead@example.com"
    link = f"{PUBLIC_URL}/api/v1/tasks/{world['task_id']}"
    other_link = f"{PUBLIC_URL}/api/v1/tasks/{world['other_id']}"

    await at(app_context, clock, 0)  # task.created: the assignee hears of it
    subject, body = _mail(sink, dana, "New CRITICAL incident")
    assert subject == "New CRITICAL incident: Checkout latency over 5 s"
    _has_facts(
        body,
        assignee="Dana Developer",
        type="INCIDENT",
        priority="CRITICAL",
        open=link,
        response_due="Tue 27 Jan 2026, 10:45 UTC",
        resolution_due="Tue 27 Jan 2026, 12:30 UTC",
    )

    await at(app_context, clock, 12)  # START warning at 75 % of 15 minutes
    subject, body = _mail(sink, dana, "SLA Warning: Checkout")
    assert "response deadline of CRITICAL incident" in body
    assert "it is due Tue 27 Jan 2026, 10:45 UTC" in body
    _has_facts(body, assignee="Dana Developer", type="INCIDENT", priority="CRITICAL", open=link)

    await at(app_context, clock, 15)  # START breach: the policy's step 1 mails the assignee
    subject, body = _mail(sink, dana, "Escalation (level 1)")
    assert subject == "Escalation (level 1): Checkout latency over 5 s"
    assert 'Incident "Checkout latency over 5 s" has been escalated to you (level 1' in body
    assert "Response due: Tue 27 Jan 2026, 10:45 UTC" in body
    _has_facts(body, assignee="Dana Developer", type="INCIDENT", priority="CRITICAL", open=link)

    await at(app_context, clock, 20)  # step 2: the team lead, by e-mail and Slack
    subject, body = _mail(sink, lena, "Escalation (level 2)")
    assert body.startswith("Hello Lena Lead,")
    _has_facts(body, assignee="Dana Developer", type="INCIDENT", open=link)
    [post] = slack.requests
    message = post.json()
    assert "Escalated (level 2): Checkout latency over 5 s" in str(message["blocks"])
    assert "Assignee: Dana Developer" in message["text"]
    assert "CRITICAL incident" in message["text"]
    assert "Response due Tue 27 Jan 2026, 10:45 UTC" in message["text"]
    assert link in str(message["blocks"])

    await at(app_context, clock, 30)  # the other task's START breach: built-in mail
    subject, body = _mail(sink, dana, "SLA Breach: Search index")
    assert "The response deadline of HIGH incident" in body
    assert "it was due Tue 27 Jan 2026, 11:00 UTC" in body
    _has_facts(body, assignee="Dana Developer", type="INCIDENT", priority="HIGH", open=other_link)

    # Outbound webhooks carry the same facts about the task in their event JSON.
    posted = {
        (r.headers["x-opsflow-event"], r.json()["data"]["task"]["title"]): r.json()["data"]
        for r in hooks.requests
    }
    breach = posted[("sla.breach", "Search index is stale")]
    assert breach["sla_type"] == "START"
    assert breach["expected_deadline"] == "2026-01-27T11:00:00Z"
    assert {k: breach["task"][k] for k in ("task_type", "priority", "assigned_to")} == {
        "task_type": "INCIDENT",
        "priority": "HIGH",
        "assigned_to": world["developer"].id,
    }
    fired = [r.json()["data"] for r in hooks.requests if r.json()["type"] == "escalation.fired"]
    assert [(f["level"], f["task"]["task_type"]) for f in fired] == [
        (1, "INCIDENT"),
        (2, "INCIDENT"),
    ]
    assert {f["task"]["start_deadline"] for f in fired} == {"2026-01-27T10:45:00Z"}


class _Recording(NotificationTemplates):
    """Renders like the real thing and notes every ``{{ value }}`` that came out empty."""

    def __init__(self) -> None:
        super().__init__()
        self.current = ""
        self.empty: list[str] = []

    def _env(self, mode: Mode, strict: bool) -> SandboxedEnvironment:
        env = super()._env(mode, strict)
        if not getattr(env, "recording", False):
            original = env.finalize
            assert original is not None

            def finalize(value: Any) -> Any:
                if value is None or value == "" or isinstance(value, jinja2.Undefined):
                    self.empty.append(self.current)
                return original(value)

            env.finalize = finalize
            env.recording = True  # type: ignore[attr-defined]
        return env

    def _render(
        self,
        source: str,
        context: Any,
        channel: Channel,
        part: str,
        strict: bool,
        name: str,
    ) -> str:
        self.current = name
        return super()._render(source, context, channel, part, strict, name)


async def test_every_builtin_template_renders_every_real_event_without_an_empty_value(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    world = await _world(client, admin_headers)
    await at(app_context, clock, 14)  # warning, critical
    await at(app_context, clock, 20)  # breach, both escalation steps
    for action in ("acknowledge", "start"):
        done = await client.patch(
            f"/tasks/{world['task_id']}/{action}", json={}, headers=admin_headers
        )
        assert done.status_code == 200, done.text
    done = await client.patch(
        f"/tasks/{world['task_id']}/complete",
        json={"resolution_notes": "Rolled back the release."},
        headers=admin_headers,
    )
    assert done.status_code == 200, done.text
    reassigned = await client.patch(
        f"/tasks/{world['other_id']}/assign",
        json={"assigned_to": world["lead"].id},
        headers=admin_headers,
    )
    assert reassigned.status_code == 200, reassigned.text
    await at(app_context, clock, 21)

    templates = _Recording()
    seen: set[str] = set()
    async with unit_of_work(app_context.sessions) as session:
        events = list(await session.scalars(select(OutboxEvent).order_by(OutboxEvent.created_at)))
        recipient = await session.scalar(select(User).where(User.username == "lena-lead"))
        assert recipient is not None
        for event in events:
            if event.aggregate_type != "task" or event.event_type in seen:
                continue
            seen.add(event.event_type)
            context = await message_context(session, event, recipient)
            for channel in (Channel.EMAIL, Channel.SLACK, Channel.SMS):
                rendered = templates.render(event.event_type, channel, context)
                assert rendered.body.strip(), (event.event_type, channel)
    served = {
        "task.created",
        "task.assigned",
        "task.completed",
        "sla.warning",
        "sla.critical",
        "sla.breach",
        "escalation.fired",
        "task.acknowledged",  # a generic one
    }
    assert served <= seen, seen
    assert templates.empty == []
