"""Notification templates: built-in texts for every event and channel, user overrides,
escaping per channel, the sandbox and its limits, validation of edited templates."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import pytest

from opsflow.models.enums import Channel
from opsflow.notifications.channels import segment_sms
from opsflow.notifications.templates import (
    EVENTS,
    NotificationTemplates,
    TemplateError,
    build_context,
    default_source,
    parse_template_name,
    sample_context,
    template_names,
)

TITLE = "Database connection pool exhaustion"
TEXT_CHANNELS = (Channel.EMAIL, Channel.SLACK, Channel.SMS)


@pytest.fixture(scope="module")
def templates() -> NotificationTemplates:
    return NotificationTemplates()


def context_with(event: str, **task: Any) -> dict[str, Any]:
    context = sample_context(event)
    context["task"] = {**context["task"], **task}
    return context


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("channel", TEXT_CHANNELS)
def test_every_default_renders(
    templates: NotificationTemplates, event: str, channel: Channel
) -> None:
    rendered = templates.render(event, channel, sample_context(event))
    assert rendered.template == f"{event}.{channel.value.lower()}"
    assert TITLE[:40] in rendered.body
    assert rendered.overridden == ()
    assert rendered.errors == ()
    assert "None" not in rendered.body
    assert "{{" not in rendered.body
    if channel is Channel.SMS:
        assert rendered.subject is None
        assert "\n" not in rendered.body
        # Short enough for at most two segments, and plain GSM-7 (no Unicode surcharge).
        assert 1 <= len(segment_sms(rendered.body)) <= 2
        assert all(len(part) <= 160 for part in segment_sms(rendered.body))
    else:
        assert rendered.subject
        assert TITLE in rendered.subject
        assert "\n" not in rendered.subject
    if channel is Channel.EMAIL:
        assert rendered.body.startswith("Hello Jane Smith,\n\n")
        assert "\n-- \n" in rendered.body
        assert rendered.html is not None
        assert rendered.html.startswith("<!DOCTYPE html>")
    if channel is Channel.SLACK:
        assert rendered.payload == {
            "title": TITLE,
            "priority": "CRITICAL",
            "status": "IN_PROGRESS",
            "link": sample_context(event)["link"],
        }


def test_sla_wording_follows_seed_000(templates: NotificationTemplates) -> None:
    warning = templates.render("sla.warning", Channel.EMAIL, sample_context("sla.warning"))
    assert warning.subject == f"SLA Warning: {TITLE}"
    assert (
        f'The resolution deadline of CRITICAL incident "{TITLE}" is approaching: it is due'
        " Tue 27 Jan 2026, 14:30 UTC." in warning.body
    )
    breach = templates.render("sla.breach", Channel.EMAIL, sample_context("sla.breach"))
    assert breach.subject == f"SLA Breach: {TITLE}"
    assert "has been breached: it was due Tue 27 Jan 2026, 14:30 UTC" in breach.body
    assert "Priority:   CRITICAL" in breach.body
    assert f"Open:       {sample_context('sla.breach')['link']}" in breach.body


def test_start_clock_reads_as_response_and_asks_to_acknowledge(
    templates: NotificationTemplates,
) -> None:
    context = sample_context("sla.warning")
    context["sla"] = {**context["sla"], "sla_type": "START"}
    body = templates.render("sla.warning", Channel.EMAIL, context).body
    assert "The response deadline of" in body
    assert "Please acknowledge or start it" in body


def test_times_are_shown_in_the_recipients_timezone(templates: NotificationTemplates) -> None:
    context = sample_context("sla.critical")
    context["recipient"] = {"name": "Jean", "timezone": "Europe/Paris"}
    rendered = templates.render("sla.critical", Channel.EMAIL, context)
    assert "it is due Tue 27 Jan 2026, 15:30 CET." in rendered.body
    sms = templates.render("sla.critical", Channel.SMS, context)
    assert "due 27 Jan 15:30 CET." in sms.body


def test_task_completed_uses_the_resolved_templates(templates: NotificationTemplates) -> None:
    rendered = templates.render("task.completed", Channel.EMAIL, sample_context("task.resolved"))
    assert rendered.template == "task.resolved.email"
    assert rendered.subject == f"Resolved: {TITLE}"
    assert "Resolution notes:\nRaised the pool size" in rendered.body


def test_other_events_get_generic_wording(templates: NotificationTemplates) -> None:
    rendered = templates.render("task.blocked", Channel.EMAIL, sample_context("task.blocked"))
    assert rendered.subject == f"OpsFlow: task.blocked: {TITLE}"
    assert "Event task.blocked for incident" in rendered.body


def test_defaults_survive_a_sparse_context(templates: NotificationTemplates) -> None:
    context = build_context("sla.breach", {"task": {"title": "Disk full"}})
    rendered = templates.render("sla.breach", Channel.EMAIL, context)
    assert rendered.subject == "SLA Breach: Disk full"
    assert "Hello there," in rendered.body
    assert "Assignee:   unassigned" in rendered.body
    assert "Open:" not in rendered.body


def test_build_context_from_an_engine_payload() -> None:
    task_id = uuid.uuid4()
    deadline = datetime(2026, 1, 27, 14, 30, tzinfo=UTC)
    payload = {
        "event_id": uuid.uuid4(),
        "event_type": "RESOLVE_BREACH",
        "severity": "CRITICAL",
        "sla_type": "RESOLVE",
        "due_at": deadline,
        "expected_deadline": deadline,
        "notify": True,
        "task": {"id": task_id, "title": "Disk full", "priority": "HIGH"},
    }
    context = build_context(
        "sla.breach",
        payload,
        link="https://ops.example.com/t/1",
        event_id="e-1",
        occurred_at=deadline,
    )
    assert context["task"] == {"id": str(task_id), "title": "Disk full", "priority": "HIGH"}
    assert context["sla"]["expected_deadline"] == "2026-01-27T14:30:00Z"
    assert context["webhook"]["type"] == "sla.breach"
    assert context["webhook"]["id"] == "e-1"
    assert context["webhook"]["data"]["task"]["id"] == str(task_id)
    json.dumps(context)  # plain JSON all the way down


def test_slack_escapes_values_but_not_its_own_markup(templates: NotificationTemplates) -> None:
    context = context_with("sla.breach", title="<!channel> db & cache <@U123>")
    rendered = templates.render("sla.breach", Channel.SLACK, context)
    assert "*&lt;!channel&gt; db &amp; cache &lt;@U123&gt;*" in rendered.body
    assert "<!channel>" not in rendered.body
    assert rendered.body.startswith(":red_circle: *SLA breached*")
    # The header is Slack plain_text: shown literally, so not escaped.
    assert rendered.subject == "SLA breached: <!channel> db & cache <@U123>"


def test_html_part_is_autoescaped_and_text_is_not(templates: NotificationTemplates) -> None:
    context = context_with("task.created", title='<script>alert("x")</script>')
    rendered = templates.render("task.created", Channel.EMAIL, context)
    assert '"<script>alert("x")</script>"' in rendered.body
    assert rendered.html is not None
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;" in rendered.html
    assert 'href="https://opsflow.example.com/tasks/' in rendered.html


def test_html_link_button_only_for_http_links(templates: NotificationTemplates) -> None:
    context = sample_context("task.created")
    context["link"] = "javascript:alert(1)"
    rendered = templates.render("task.created", Channel.EMAIL, context)
    assert rendered.html is not None
    assert 'href="javascript:' not in rendered.html
    assert "<a " not in rendered.html


def test_user_overrides_replace_single_parts(templates: NotificationTemplates) -> None:
    overrides = {
        "sla.breach.email.subject": "[{{ task.priority }}] BREACH {{ task.title | upper }}",
        "sla.breach.sms.body": "Breach: {{ task.title }}",
        "sla.warning.email.subject": "not used for a breach",
    }
    rendered = templates.render("sla.breach", "EMAIL", sample_context("sla.breach"), overrides)
    assert rendered.subject == f"[CRITICAL] BREACH {TITLE.upper()}"
    assert rendered.overridden == ("sla.breach.email.subject",)
    assert "has been breached" in rendered.body  # the body is still the default
    assert rendered.html is not None
    assert f"BREACH {TITLE.upper()}</h1>" in rendered.html  # HTML uses the rendered subject
    sms = templates.render("sla.breach", Channel.SMS, sample_context("sla.breach"), overrides)
    assert sms.body == f"Breach: {TITLE}"


def test_overridden_subject_cannot_inject_headers(templates: NotificationTemplates) -> None:
    overrides = {"sla.breach.email.subject": "Hi{{ '\\r\\n' }}Bcc: victim@example.com\n"}
    rendered = templates.render("sla.breach", "EMAIL", sample_context("sla.breach"), overrides)
    assert rendered.subject == "Hi Bcc: victim@example.com"


def test_a_broken_override_raises_a_template_error(templates: NotificationTemplates) -> None:
    overrides = {"sla.breach.email.body": "Hello\n{{ task.titel }}"}
    with pytest.raises(TemplateError) as caught:
        templates.render("sla.breach", Channel.EMAIL, sample_context("sla.breach"), overrides)
    assert caught.value.name == "sla.breach.email.body"
    assert caught.value.lineno == 2
    assert "titel" in str(caught.value)


def test_fallback_renders_the_default_and_reports_the_error(
    templates: NotificationTemplates,
) -> None:
    overrides = {
        "sla.breach.email.body": "{% for %}",
        "sla.breach.email.subject": "Custom {{ task.title }}",
    }
    rendered = templates.render(
        "sla.breach", Channel.EMAIL, sample_context("sla.breach"), overrides, fallback=True
    )
    assert rendered.subject == f"Custom {TITLE}"
    assert "has been breached" in rendered.body
    assert rendered.overridden == ("sla.breach.email.subject",)
    assert len(rendered.errors) == 1
    assert rendered.errors[0].startswith("sla.breach.email.body, line 1: syntax error")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ ''.__class__.__mro__ }}", "unsafe"),
        ("{{ task.title.__class__.__base__.__subclasses__() }}", "unsafe"),
        ("{{ task.title | attr('__class__') }}", "unsafe"),
        ("{{ task.items.__self__ }}", "unsafe"),
        ("{% set x = task.update({'title': 'x'}) %}", "unsafe"),
        ("{{ cycler }}{{ namespace }}", "undefined"),
        ("{{ lipsum() }}", "undefined"),
        ("{% include 'secrets.txt' %}", "loader"),
        ("{% import 'x' as y %}", "loader"),
    ],
)
def test_sandbox_blocks_internals(
    templates: NotificationTemplates, source: str, expected: str
) -> None:
    with pytest.raises(TemplateError, match=expected):
        templates.render_source(source, sample_context())


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 'x' * 10**9 }}", "repetition"),
        ("{{ [1] * 10**8 }}", "repetition"),
        ("{{ 10 ** 100000 }}", "exponent"),
        ("{% for i in range(10**9) %}{% endfor %}", "too large"),
        ("{% for i in range(5000) %}{% for j in range(5000) %}{% endfor %}{% endfor %}", "budget"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursion"),
        ("{{ '%999999999d' % 1 }}", "format width"),
        ("{{ '{:>999999999}'.format(1) }}", "format width"),
        ("{{ '%999999999d' | format(1) }}", "format width"),
        ("{{ 'x'.center(10**9) }}", "too large"),
        ("{{ 'x' | center(10**9) }}", "too large"),
        ("{{ ('x' * 60000).replace('', 'y' * 1000) }}", "replace"),
        ("{{ ('x' * 60000) | replace('', 'y' * 1000) }}", "replace"),
    ],
)
def test_resource_limits_fail_fast(
    templates: NotificationTemplates, source: str, expected: str
) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError, match=expected):
        templates.render_source(source, sample_context())
    assert time.monotonic() - started < 5


def test_output_size_is_limited() -> None:
    small = NotificationTemplates(max_output_chars=1000)
    assert small.render_source("{{ 'x' * 1000 }}", {}) == "x" * 1000
    with pytest.raises(TemplateError, match="output is larger than 1000"):
        small.render_source("{% for i in range(20) %}{{ 'x' * 60 }}{% endfor %}", {})


def test_source_size_is_limited(templates: NotificationTemplates) -> None:
    source = "x" * 20_001
    with pytest.raises(TemplateError, match="larger than 20000"):
        templates.render_source(source, {})
    assert templates.validate(source, "sla.breach.email.body") == [
        "sla.breach.email.body: template is larger than 20000 characters"
    ]


def test_reasonable_loops_and_filters_work(templates: NotificationTemplates) -> None:
    source = (
        "{% for key, value in task | dictsort %}{% if key in ['priority', 'status'] %}"
        "{{ key }}={{ value }};{% endif %}{% endfor %} {{ task.title | truncate(12) }}"
        " {{ '%05d' % 42 }} {{ '{:>4}'.format(7) }} {{ range(3) | join(',') }}"
    )
    assert (
        templates.render_source(source, sample_context("sla.breach"))
        == "priority=CRITICAL;status=IN_PROGRESS; Database... 00042    7 0,1,2"
    )


def test_validate_accepts_a_good_template(templates: NotificationTemplates) -> None:
    source = "{{ task.priority }}: {{ task.title }} due {{ sla.expected_deadline | datetime }}"
    assert templates.validate(source, "sla.breach.email.subject") == []
    assert templates.validate(source) == []


@pytest.mark.parametrize(
    ("name", "source", "expected"),
    [
        ("sla.breach.email.body", "{% if task.title %}", "line 1: syntax error"),
        ("sla.breach.email.body", "ok\n{{ task.nope }}", "line 2: undefined value"),
        # escalation.* samples carry no SLA section; a template for them cannot use it.
        ("escalation.fired.email.body", "{{ sla.due_at }}", "undefined value"),
        ("sla.breach.email.subject", "{{ '' }}", "renders to nothing"),
        ("sla.breach.fax.body", "hi", "unknown channel 'fax'"),
        ("sla.breach.webhook.body", "hi", "WEBHOOK parts are none"),
        ("sla.breach.email.footer", "hi", "EMAIL parts are subject, body, html"),
        ("breach.email.subject", "hi", "not <event>.<channel>.<part>"),
        ("task.completed.email.subject", "hi", "use 'task.resolved'"),
    ],
)
def test_validate_reports_problems(
    templates: NotificationTemplates, name: str, source: str, expected: str
) -> None:
    problems = templates.validate(source, name)
    assert problems
    assert any(expected in problem for problem in problems), problems


def test_webhook_body_is_the_event_json(templates: NotificationTemplates) -> None:
    context = sample_context("sla.breach")
    rendered = templates.render("sla.breach", Channel.WEBHOOK, context)
    assert rendered.subject is None
    assert rendered.payload == context["webhook"]
    assert json.loads(rendered.body) == context["webhook"]
    assert rendered.payload["data"]["event_type"] == "RESOLVE_BREACH"
    with pytest.raises(TemplateError, match="no event JSON"):
        templates.render("sla.breach", Channel.WEBHOOK, {"task": {}})


def test_template_names_cover_every_event_and_part() -> None:
    names = template_names()
    assert len(names) == len(EVENTS) * 6
    assert "sla.breach.email.subject" in names
    assert "escalation.fired.slack.title" in names
    assert "task.resolved.sms.body" in names
    for name in names:
        event, channel, part = parse_template_name(name)
        assert default_source(name)
        assert f"{event}.{channel.value.lower()}.{part}" == name


def test_every_builtin_file_serves_a_template_and_email_bodies_keep_the_signature() -> None:
    """The built-in texts are package data: every file is reached from a template name, and
    an editor that strips trailing spaces must not break the ``-- `` signature separator."""
    folder = resources.files("opsflow.notifications").joinpath("builtin")
    files = {entry.name for entry in folder.iterdir() if entry.name.endswith(".j2")}
    used = {f"{name}.j2" for name in template_names() if not name.endswith(".html")}
    used |= {"email.html.j2"} | {f"generic.{n}.j2" for n in GENERIC_PARTS}
    assert files == used
    for name in template_names():
        if name.endswith(".email.body"):
            assert "\n-- \n" in default_source(name), name
    assert "\n-- \n" in default_source("task.other_thing.email.body")


GENERIC_PARTS = ("email.subject", "email.body", "slack.title", "slack.body", "sms.body")


def test_compiled_templates_are_cached_and_bounded() -> None:
    templates = NotificationTemplates(cache_size=3)
    for index in range(10):
        assert templates.render_source(f"{index}", {}) == str(index)
    assert len(templates._compiled) == 3
