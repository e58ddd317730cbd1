"""Notification texts: built-in templates per (event, channel) and user overrides (Jinja2).

Template names are ``{event}.{channel}.{part}``, e.g. ``sla.breach.email.subject``:

========  =====================================================================
channel   parts
========  =====================================================================
email     ``subject`` and ``body`` (plain text), ``html`` (the HTML alternative)
slack     ``title`` (the header, plain text) and ``body`` (Slack mrkdwn)
sms       ``body`` (short; the SMS channel splits it into segments)
webhook   none: the body is the event JSON itself
========  =====================================================================

Built-in texts are template files in package data, ``builtin/<name>.j2`` (``generic.*``
for events without texts of their own, one ``email.html`` frame for every event); their
source is what ``default_source`` shows. Users may override any part
(``PUT /notification-templates/{name}``, stored elsewhere); the caller passes the overrides
as a ``{name: source}`` mapping. Rendering rules:

- Templates run in the sandbox of :mod:`opsflow.notifications.sandbox` (Jinja2's immutable
  sandbox with budgets on loops, calls and value sizes): a template cannot reach internals,
  stall a worker or exhaust its memory.
- Escaping follows the output: nothing for e-mail text and SMS, Slack's ``& < >`` escaping
  for every ``{{ value }}`` in Slack mrkdwn (a task titled ``<!channel>`` must not ping a
  whole channel), HTML autoescaping for the e-mail HTML part.
- A user template is strict: an unknown variable is an error, reported as
  :class:`TemplateError` with the line, never an exception from inside Jinja. The built-in
  templates are lenient (a missing value renders empty) so they always produce something.
  ``render(..., fallback=True)`` uses the built-in part when an override fails and reports
  the failure in ``RenderedMessage.errors``, so a broken edit cannot silence a breach alert.

The context a template sees (:func:`build_context`): ``event``, ``task`` (the task summary
events carry: ``id``, ``title``, ``task_type``, ``priority``, ``status``, ``customer_tier``,
``assigned_to``, ``team_id``, ``start_deadline``, ``resolve_deadline``...), ``sla``
(``event_type``, ``severity``, ``sla_type`` START|RESOLVE, ``due_at``,
``expected_deadline``; for an escalation, the ``sla_type`` and deadline that started the
run), ``escalation`` (``level``, ``cycle``, ``policy``, ``trigger``, ``message``), ``actor``
(``type``, ``id``, ``name``), ``recipient`` (``name``, ``email``, ``timezone``),
``assignee`` (a display name), ``link`` (URL of the task), ``app_name``, ``payload`` (the
raw event payload), ``comment`` (for a mention: ``body``, ``excerpt``, ``internal``, and
``author``). Filters beyond Jinja's: ``datetime(tz=None, short=False)`` and
``sla_label`` (START → response, RESOLVE → resolution).
"""

from __future__ import annotations

import functools
import json
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError

from opsflow.kit.jsonable import to_jsonable
from opsflow.models.enums import Channel
from opsflow.notifications.sandbox import (
    BUDGET_VAR,
    ITERATION_BUDGET,
    Budget,
    Mode,
    SandboxedEnvironment,
    budget_loops,
)

EVENTS: tuple[str, ...] = (
    "sla.warning",
    "sla.critical",
    "sla.breach",
    "escalation.fired",
    "task.created",
    "task.assigned",
    "task.resolved",
    "comment.mentioned",
)
EVENT_ALIASES: dict[str, str] = {"task.completed": "task.resolved"}
PARTS: dict[Channel, tuple[str, ...]] = {
    Channel.EMAIL: ("subject", "body", "html"),
    Channel.SLACK: ("title", "body"),
    Channel.SMS: ("body",),
    Channel.WEBHOOK: (),
}

MAX_SOURCE_CHARS = 20_000
MAX_OUTPUT_CHARS = 64 * 1024
MAX_SUBJECT_CHARS = 500
MAX_SLACK_TITLE_CHARS = 150

_EVENT_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_BLANK_RUNS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


class TemplateError(Exception):
    """A template that cannot be used, with a message fit to show its author."""

    def __init__(self, message: str, *, name: str | None = None, lineno: int | None = None):
        self.name = name
        self.lineno = lineno
        self.message = message
        where = name or "template"
        if lineno is not None:
            where += f", line {lineno}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class RenderedMessage:
    template: str
    """Base name of what was rendered: ``sla.breach.email``."""
    subject: str | None
    """E-mail subject or Slack header; None for SMS and webhooks."""
    body: str
    html: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    """For webhooks the event JSON; for Slack the facts (title, priority, status, link)."""
    overridden: tuple[str, ...] = ()
    """Names of the parts that came from user overrides."""
    errors: tuple[str, ...] = ()
    """Overrides that failed and were replaced by the built-in part (``fallback=True``)."""


# --------------------------------------------------------------------------- names


def canonical_event(event: str) -> str:
    return EVENT_ALIASES.get(event, event)


def template_name(event: str, channel: Channel | str, part: str) -> str:
    return f"{canonical_event(event)}.{Channel(channel).value.lower()}.{part}"


def parse_template_name(name: str) -> tuple[str, Channel, str]:
    """``(event, channel, part)`` of a template name; ValueError when it names nothing."""
    pieces = name.split(".")
    if len(pieces) < 4:
        raise ValueError(f"template name {name!r} is not <event>.<channel>.<part>")
    event, channel_name, part = ".".join(pieces[:-2]), pieces[-2], pieces[-1]
    if not _EVENT_NAME.fullmatch(event):
        raise ValueError(f"template name {name!r}: {event!r} is not an event type")
    try:
        channel = Channel(channel_name.upper())
    except ValueError:
        raise ValueError(f"template name {name!r}: unknown channel {channel_name!r}") from None
    if part not in PARTS[channel]:
        allowed = ", ".join(PARTS[channel]) or "none (the body is the event JSON)"
        raise ValueError(f"template name {name!r}: {channel.value} parts are {allowed}")
    if canonical_event(event) != event:
        raise ValueError(f"template name {name!r}: use {canonical_event(event)!r}")
    return event, channel, part


def template_names() -> list[str]:
    """Every built-in template name, for listing and editing."""
    return [
        template_name(event, channel, part)
        for event in EVENTS
        for channel in (Channel.EMAIL, Channel.SLACK, Channel.SMS)
        for part in PARTS[channel]
    ]


def default_source(name: str) -> str:
    """Source of the built-in template for a name (generic wording for other events)."""
    event, channel, part = parse_template_name(name)
    return _default_source(event, channel, part)


def part_mode(channel: Channel, part: str) -> Mode:
    if channel is Channel.EMAIL and part == "html":
        return "html"
    if channel is Channel.SLACK and part == "body":
        return "slack"
    return "text"


# --------------------------------------------------------------------------- context


def webhook_body(
    event: str,
    payload: Mapping[str, Any],
    *,
    event_id: Any = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """The JSON an outbound webhook receives: ``{id, type, occurred_at, data}``."""
    return {
        "id": None if event_id is None else str(event_id),
        "type": event,
        "occurred_at": to_jsonable(occurred_at),
        "data": to_jsonable(dict(payload)),
    }


def build_context(
    event: str,
    payload: Mapping[str, Any],
    *,
    recipient: Mapping[str, Any] | None = None,
    assignee: str | None = None,
    link: str | None = None,
    app_name: str = "OpsFlow",
    event_id: Any = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """A template context from an outbox event's payload (see the module docstring)."""
    data: dict[str, Any] = to_jsonable(dict(payload))

    def section(key: str) -> dict[str, Any]:
        value = data.get(key)
        return dict(value) if isinstance(value, Mapping) else {}

    task = section("task")
    sla: dict[str, Any] = {}
    if event.startswith("sla."):
        keys = ("event_type", "severity", "sla_type", "due_at", "expected_deadline")
        sla = {key: data.get(key) for key in keys}
    escalation = section("escalation")
    if event.startswith("escalation.") and not escalation:
        # `escalation.fired` carries the step's facts at the top of its payload.
        facts = ("level", "cycle", "policy", "trigger", "message", "recipients", "channels")
        escalation = {key: data.get(key) for key in facts}
    if event.startswith("escalation.") and data.get("sla_type") in ("START", "RESOLVE"):
        # The deadline whose breach (or warning) started the run.
        kind = data["sla_type"]
        deadline = task.get("start_deadline" if kind == "START" else "resolve_deadline")
        sla = {"sla_type": kind, "expected_deadline": deadline}
    comment = section("comment")
    if comment:
        body = str(comment.get("body") or "")
        flat = " ".join(body.split())
        comment["excerpt"] = flat if len(flat) <= 200 else flat[:199].rstrip() + "…"
        comment["author"] = section("author")
    return {
        "event": event,
        "task": task,
        "comment": comment,
        "sla": sla,
        "escalation": escalation,
        "actor": section("actor"),
        "recipient": to_jsonable(dict(recipient or {})),
        "assignee": assignee,
        "link": link,
        "app_name": app_name,
        "payload": data,
        "webhook": webhook_body(event, data, event_id=event_id, occurred_at=occurred_at),
    }


def sample_context(event: str | None = None) -> dict[str, Any]:
    """A realistic context for ``event`` (every section filled when None): what user
    templates are validated against, and what the docs show."""
    task = {
        "id": "660e8400-e29b-41d4-a716-446655440000",
        "title": "Database connection pool exhaustion",
        "task_type": "INCIDENT",
        "priority": "CRITICAL",
        "status": "IN_PROGRESS",
        "customer_tier": "ENTERPRISE",
        "assigned_to": "550e8400-e29b-41d4-a716-446655440001",
        "team_id": "770e8400-e29b-41d4-a716-446655440002",
        "start_deadline": "2026-01-27T11:30:00Z",
        "resolve_deadline": "2026-01-27T14:30:00Z",
        "resolution_notes": "Raised the pool size and fixed the leaking worker.",
        "version": 3,
    }
    kind = (event or "sla.breach").rsplit(".", 1)[-1].upper()
    if kind not in ("WARNING", "CRITICAL", "BREACH"):
        kind = "BREACH"
    payload: dict[str, Any] = {
        "task": task,
        "actor": {"type": "user", "id": "550e8400-e29b-41d4-a716-446655440009", "name": "Ops Lead"},
    }
    if event is None or event.startswith("sla."):
        payload |= {
            "event_id": "880e8400-e29b-41d4-a716-446655440003",
            "event_type": f"RESOLVE_{kind}",
            "severity": "WARNING" if kind == "WARNING" else "CRITICAL",
            "sla_type": "RESOLVE",
            "due_at": "2026-01-27T13:45:00Z",
            "expected_deadline": "2026-01-27T14:30:00Z",
        }
    if event is None or event.startswith("comment."):
        payload |= {
            "author": {"type": "user", "id": payload["actor"]["id"], "name": "Ops Lead"},
            "comment": {
                "id": "aa0e8400-e29b-41d4-a716-446655440005",
                "body": "@jane can you check the **replica lag** before we fail over?",
                "internal": False,
            },
        }
    if event is None or event.startswith("escalation."):
        # As `escalation.fired` carries them: the step's facts at the top of the payload.
        payload |= {
            "level": 2,
            "cycle": 0,
            "policy": "Critical database incidents",
            "trigger": "breach",
            "message": "This incident requires your attention.",
            "recipients": [{"id": "550e8400-e29b-41d4-a716-446655440001", "username": "jane"}],
            "channels": ["email", "slack"],
        }
        if event is not None:
            payload["sla_type"] = "RESOLVE"
    context = build_context(
        event or "sla.breach",
        payload,
        recipient={"name": "Jane Smith", "email": "jane.smith@example.com", "timezone": "UTC"},
        assignee="Jane Smith",
        link="https://opsflow.example.com/tasks/660e8400-e29b-41d4-a716-446655440000",
        event_id="990e8400-e29b-41d4-a716-446655440004",
        occurred_at=datetime(2026, 1, 27, 14, 30, tzinfo=UTC),
    )
    if event is None:
        context["sla"] = {key: payload[key] for key in context["sla"]}
        context["escalation"] = build_context("escalation.fired", payload)["escalation"]
    return context


# --------------------------------------------------------------------------- renderer


class NotificationTemplates:
    """Compiles and renders notification templates. Build one per process and share it:
    compiled templates are cached per source (bounded)."""

    def __init__(
        self,
        *,
        max_source_chars: int = MAX_SOURCE_CHARS,
        max_output_chars: int = MAX_OUTPUT_CHARS,
        iteration_budget: int = ITERATION_BUDGET,
        cache_size: int = 512,
    ) -> None:
        self.max_source_chars = max_source_chars
        self.max_output_chars = max_output_chars
        self.iteration_budget = iteration_budget
        self._cache_size = cache_size
        self._envs: dict[tuple[Mode, bool], SandboxedEnvironment] = {}
        self._compiled: dict[tuple[Mode, bool, str], jinja2.Template] = {}

    # -- public

    def render(
        self,
        event: str,
        channel: Channel | str,
        context: Mapping[str, Any],
        overrides: Mapping[str, str] | None = None,
        *,
        fallback: bool = False,
    ) -> RenderedMessage:
        """Render every part of ``event`` for ``channel``.

        Raises :class:`TemplateError` when an override fails (unless ``fallback``) or, for
        webhooks, when the context carries no event JSON.
        """
        event = canonical_event(event)
        channel = Channel(channel)
        base = f"{event}.{channel.value.lower()}"
        if channel is Channel.WEBHOOK:
            return self._render_webhook(event, base, context)
        overrides = overrides or {}
        texts: dict[str, str] = {}
        overridden: list[str] = []
        errors: list[str] = []
        for part in PARTS[channel]:
            name = f"{base}.{part}"
            part_context: Mapping[str, Any] = context
            if part == "html":
                part_context = {**context, "subject": texts["subject"], "body": texts["body"]}
            source = overrides.get(name)
            if source is not None:
                try:
                    texts[part] = self._render(source, part_context, channel, part, True, name)
                    overridden.append(name)
                    continue
                except TemplateError as exc:
                    if not fallback:
                        raise
                    errors.append(str(exc))
            default = _default_source(event, channel, part)
            texts[part] = self._render(default, part_context, channel, part, False, name)
        if channel is Channel.EMAIL:
            return RenderedMessage(
                template=base,
                subject=texts["subject"],
                body=texts["body"],
                html=texts["html"] or None,
                overridden=tuple(overridden),
                errors=tuple(errors),
            )
        if channel is Channel.SLACK:
            task = context.get("task") if isinstance(context.get("task"), Mapping) else {}
            facts = {
                "title": (task or {}).get("title"),
                "priority": (task or {}).get("priority"),
                "status": (task or {}).get("status"),
                "link": context.get("link"),
            }
            return RenderedMessage(
                template=base,
                subject=texts["title"],
                body=texts["body"],
                payload={k: v for k, v in facts.items() if v not in (None, "")},
                overridden=tuple(overridden),
                errors=tuple(errors),
            )
        return RenderedMessage(
            template=base,
            subject=None,
            body=texts["body"],
            overridden=tuple(overridden),
            errors=tuple(errors),
        )

    def render_source(
        self,
        source: str,
        context: Mapping[str, Any],
        *,
        mode: Mode = "text",
        strict: bool = True,
        name: str | None = None,
    ) -> str:
        """Render one template source as it is (no post-processing)."""
        template = self._compile(source, mode, strict, name)
        budget = Budget(self.iteration_budget)
        chunks: list[str] = []
        size = 0
        try:
            for chunk in template.generate({**context, BUDGET_VAR: budget}):
                size += len(chunk)
                if size > self.max_output_chars:
                    raise TemplateError(
                        f"output is larger than {self.max_output_chars} characters", name=name
                    )
                chunks.append(chunk)
        except TemplateError:
            raise
        except Exception as exc:  # the template is user code
            raise _as_template_error(exc, name) from None
        return "".join(chunks)

    def validate(self, source: str, name: str | None = None) -> list[str]:
        """Problems with a user template (empty list: fine to save).

        It must compile, and render in strict mode against :func:`sample_context` of its
        event (of every section when ``name`` is None) within the limits, to something.
        """
        problems: list[str] = []
        channel, part, event = Channel.EMAIL, "body", None
        if name is not None:
            try:
                event, channel, part = parse_template_name(name)
            except ValueError as exc:
                problems.append(str(exc))
        if not isinstance(source, str):
            return [*problems, "template source must be a string"]
        try:
            rendered = self._render(
                source, sample_context(event), channel, part, True, name or "template"
            )
        except TemplateError as exc:
            return [*problems, str(exc)]
        if not rendered.strip():
            problems.append(f"{name or 'template'}: renders to nothing for the sample context")
        return problems

    # -- internals

    def _render_webhook(self, event: str, base: str, context: Mapping[str, Any]) -> RenderedMessage:
        body = context.get("webhook")
        if not isinstance(body, Mapping):
            if "payload" not in context:
                raise TemplateError("webhook context carries no event JSON", name=base)
            body = webhook_body(event, context.get("payload") or {})
        data: dict[str, Any] = to_jsonable(dict(body))
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        return RenderedMessage(template=base, subject=None, body=text, payload=data)

    def _render(
        self,
        source: str,
        context: Mapping[str, Any],
        channel: Channel,
        part: str,
        strict: bool,
        name: str,
    ) -> str:
        text = self.render_source(
            source, context, mode=part_mode(channel, part), strict=strict, name=name
        )
        if part == "subject":
            return _one_line(text, MAX_SUBJECT_CHARS)
        if part == "title":
            return _one_line(text, MAX_SLACK_TITLE_CHARS)
        if channel is Channel.SMS:
            return " ".join(text.split())
        if part == "html" or channel is Channel.SLACK:
            return _tidy(text).strip()
        return _tidy(text)

    def _env(self, mode: Mode, strict: bool) -> SandboxedEnvironment:
        env = self._envs.get((mode, strict))
        if env is None:
            env = self._envs[(mode, strict)] = SandboxedEnvironment(mode=mode, strict=strict)
        return env

    def _compile(self, source: str, mode: Mode, strict: bool, name: str | None) -> jinja2.Template:
        if len(source) > self.max_source_chars:
            raise TemplateError(
                f"template is larger than {self.max_source_chars} characters", name=name
            )
        key = (mode, strict, source)
        cached = self._compiled.get(key)
        if cached is not None:
            return cached
        env = self._env(mode, strict)
        try:
            template = env.from_string(budget_loops(env.parse(source)))
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"syntax error: {exc.message}", name=name, lineno=exc.lineno
            ) from None
        except (jinja2.TemplateError, RecursionError) as exc:
            raise _as_template_error(exc, name) from None
        if len(self._compiled) >= self._cache_size:
            self._compiled.pop(next(iter(self._compiled)))
        self._compiled[key] = template
        return template


def _as_template_error(exc: BaseException, name: str | None) -> TemplateError:
    lineno = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == "<template>":
            lineno = frame.lineno
    if isinstance(exc, jinja2.UndefinedError):
        message = f"undefined value: {exc.message}"
    elif isinstance(exc, SecurityError):
        message = f"not allowed: {exc}"
    elif isinstance(exc, RecursionError):
        message = "recursion too deep"
    else:
        detail = str(exc).strip()
        message = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return TemplateError(message[:1000], name=name, lineno=lineno)


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


def _tidy(text: str) -> str:
    # "-- " (with its space) is the signature separator mail clients recognise.
    lines = [line if line == "-- " else line.rstrip() for line in text.strip("\n").splitlines()]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip() + "\n"


# --------------------------------------------------------------------------- built-ins


def _default_source(event: str, channel: Channel, part: str) -> str:
    """The built-in source: ``builtin/<event>.<channel>.<part>.j2`` (one HTML frame for every
    event, ``generic.*`` for events without texts of their own)."""
    event = canonical_event(event)
    if part == "html":
        return _builtin("email.html")
    prefix = event if event in EVENTS else "generic"
    return _builtin(f"{prefix}.{channel.value.lower()}.{part}")


@functools.cache
def _builtin(stem: str) -> str:
    # A file's last newline ends the file, it is not part of the template.
    text = resources.files("opsflow.notifications").joinpath(f"builtin/{stem}.j2").read_text()
    return text.removesuffix("\n")
