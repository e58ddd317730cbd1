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

Users may override any part (``PUT /notification-templates/{name}``, stored elsewhere); the
caller passes the overrides as a ``{name: source}`` mapping. Rendering rules:

- Templates run in Jinja2's immutable sandbox: no attribute starting with ``_``, no
  internals (``''.__class__.__mro__`` fails), no mutation of the context, no ``include``,
  ``import`` or ``extends``. Loops, calls and value sizes are budgeted (below), so a template
  cannot stall a worker or exhaust its memory.
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
``expected_deadline``), ``escalation`` (``level``, ``policy``, ``message``), ``actor``
(``type``, ``id``, ``name``), ``recipient`` (``name``, ``email``, ``timezone``),
``assignee`` (a display name), ``link`` (URL of the task), ``app_name``, ``payload`` (the
raw event payload). Filters beyond Jinja's: ``datetime(tz=None, short=False)`` and
``sla_label`` (START → response, RESOLVE → resolution).
"""

from __future__ import annotations

import functools
import json
import re
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from opsflow.kit.jsonable import to_jsonable
from opsflow.models.enums import Channel

EVENTS: tuple[str, ...] = (
    "sla.warning",
    "sla.critical",
    "sla.breach",
    "escalation.fired",
    "task.created",
    "task.assigned",
    "task.resolved",
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
ITERATION_BUDGET = 10_000
"""Loop iterations plus calls one render may make."""
MAX_INT_ARGUMENT = 100_000
"""Largest number a template may pass to a filter or method (``center(10**9)``)."""
MAX_VALUE_CHARS = 256 * 1024
"""Largest string or list a template may build along the way."""

Mode = Literal["text", "slack", "html"]
_EVENT_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_BIG_FORMAT = re.compile(r"%[^a-zA-Z%]*\d{5}|\{[^{}]*:[^{}]*\d{5}")
_BLANK_RUNS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_BUDGET_VAR = "_opsflow_budget"


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

    sla: dict[str, Any] = {}
    if event.startswith("sla."):
        keys = ("event_type", "severity", "sla_type", "due_at", "expected_deadline")
        sla = {key: data.get(key) for key in keys}
    return {
        "event": event,
        "task": section("task"),
        "sla": sla,
        "escalation": section("escalation"),
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
    if event is None or event.startswith("escalation."):
        payload["escalation"] = {
            "level": 2,
            "policy": "Critical database incidents",
            "message": "This incident requires your attention.",
            "targets": ["team_lead", "manager"],
        }
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
    return context


# --------------------------------------------------------------------------- filters


def _format_datetime(value: Any, tz: Any = None, short: bool = False) -> str:
    """``Tue 27 Jan 2026, 14:30 UTC`` (short: ``27 Jan 14:30 UTC``) from a datetime or an
    ISO-8601 string; anything else is shown as it is."""
    if isinstance(value, jinja2.Undefined) or value is None or value == "":
        return ""
    instant: datetime
    if isinstance(value, datetime):
        instant = value
    else:
        try:
            instant = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    zone: Any = UTC
    if tz and not isinstance(tz, jinja2.Undefined):
        try:
            zone = ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError):
            zone = UTC
    local = instant.astimezone(zone)
    label = "UTC" if zone is UTC else local.tzname() or str(tz)
    pattern = "%d %b %H:%M" if short else "%a %d %b %Y, %H:%M"
    return f"{local.strftime(pattern)} {label}"


def _sla_label(value: Any) -> str:
    return {"START": "response", "RESOLVE": "resolution"}.get(str(value).upper(), "SLA")


def _slack_finalize(value: Any) -> Any:
    if value is None:
        return ""
    text = str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain_finalize(value: Any) -> Any:
    return "" if value is None else value


# --------------------------------------------------------------------------- sandbox


class _Budget:
    """Work one render may do; private attributes only, so a template can hold it but not
    touch it."""

    def __init__(self, units: int) -> None:
        self._left = units

    def _spend(self, units: int = 1) -> None:
        self._left -= units
        if self._left < 0:
            raise SecurityError("template does too much work (loop or call budget exhausted)")


def _spend(context: Context, units: int = 1) -> None:
    budget = context.get(_BUDGET_VAR)
    if not isinstance(budget, _Budget):
        raise SecurityError("template budget missing (was it reassigned?)")
    budget._spend(units)


def _check_value(value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int) and abs(value) > MAX_INT_ARGUMENT:
        raise SecurityError(f"number {value} is too large (limit {MAX_INT_ARGUMENT})")
    if isinstance(value, str | list | tuple) and len(value) > MAX_VALUE_CHARS:
        raise SecurityError(f"value of {len(value)} items is too large")


def _check_result(value: Any) -> Any:
    if isinstance(value, str | list | tuple) and len(value) > MAX_VALUE_CHARS:
        raise SecurityError(f"result of {len(value)} items is too large")
    return value


def _check_format(template: Any) -> None:
    if isinstance(template, str) and _BIG_FORMAT.search(template):
        raise SecurityError("format width or precision is too large")


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        growth = (text.count(old) if old else len(text) + 1) * max(len(new) - len(old), 0)
        if len(text) + growth > MAX_VALUE_CHARS:
            raise SecurityError("replace would build a value that is too large")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse operators whose result would be huge before computing it."""
    sequences = (str, list, tuple)
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if (
                isinstance(seq, sequences)
                and isinstance(count, int)
                and len(seq) * count > MAX_VALUE_CHARS
            ):
                raise SecurityError("repetition builds a value that is too large")
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and left.bit_length() + right.bit_length() > 8192
        ):
            raise SecurityError("number is too large")
    elif operator == "**":
        if isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError("exponent is too large")
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() * right > 8192:
            raise SecurityError("number is too large")
    elif operator == "+":
        if (
            isinstance(left, sequences)
            and isinstance(right, sequences)
            and len(left) + len(right) > MAX_VALUE_CHARS
        ):
            raise SecurityError("concatenation builds a value that is too large")
    elif operator == "%":
        _check_format(left)


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    passes_context = getattr(func, "jinja_pass_arg", None) is not None
    skip = 2 if passes_context else 1  # (context?, value, *arguments)

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        for argument in (*args[skip:], *kwargs.values()):
            _check_value(argument)
        value = args[skip - 1] if len(args) >= skip else None
        if name == "format":
            _check_format(value)
        if name == "replace" and len(args) >= skip + 2:
            _check_replace(value, args[skip], args[skip + 1])
        return _check_result(func(*args, **kwargs))

    return guarded


class _SandboxedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox plus budgets on loops, calls, operators and value sizes."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, mode: Mode, strict: bool) -> None:
        super().__init__(
            autoescape=mode == "html",
            finalize=_slack_finalize if mode == "slack" else _plain_finalize,
            undefined=jinja2.StrictUndefined if strict else jinja2.ChainableUndefined,
            auto_reload=False,
            cache_size=0,
        )
        self.globals = {"range": self._range, "dict": dict}
        filters = {name: _guard_filter(name, func) for name, func in self.filters.items()}
        filters["datetime"] = _format_datetime
        filters["sla_label"] = _sla_label
        filters["_budget"] = _budgeted
        self.filters = filters

    @staticmethod
    def _range(*args: int) -> range:
        for argument in args:
            _check_value(argument)
        result = range(*args)
        if len(result) > ITERATION_BUDGET:
            raise SecurityError(f"range of {len(result)} items is too long")
        return result

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # ``str.format`` is wrapped when accessed, so its width check happens here.
        if getattr(value, "__name__", "") in ("format", "format_map"):
            _check_format(getattr(value, "__self__", None))
        return super().wrap_str_format(value)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _spend(context)
        for argument in (*args, *kwargs.values()):
            _check_value(argument)
        bound = getattr(obj, "__self__", None)
        if isinstance(bound, str) and getattr(obj, "__name__", "") == "replace" and len(args) >= 2:
            _check_replace(bound, args[0], args[1])
        return _check_result(super().call(context, obj, *args, **kwargs))


@jinja2.pass_context
def _budgeted(context: Context, iterable: Iterable[Any]) -> Iterator[Any]:
    """Wrapped around every ``{% for %}`` iterable by the compiler step below."""
    for item in iterable:
        _spend(context)
        yield item


def _budget_loops(tree: nodes.Template) -> nodes.Template:
    for loop in tree.find_all(nodes.For):
        loop.iter = nodes.Filter(loop.iter, "_budget", [], [], None, None, lineno=loop.lineno)
    return tree


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
        self._envs: dict[tuple[Mode, bool], _SandboxedEnvironment] = {}
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
        budget = _Budget(self.iteration_budget)
        chunks: list[str] = []
        size = 0
        try:
            for chunk in template.generate({**context, _BUDGET_VAR: budget}):
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

    def _env(self, mode: Mode, strict: bool) -> _SandboxedEnvironment:
        env = self._envs.get((mode, strict))
        if env is None:
            env = self._envs[(mode, strict)] = _SandboxedEnvironment(mode=mode, strict=strict)
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
            template = env.from_string(_budget_loops(env.parse(source)))
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


# --------------------------------------------------------------------------- defaults

_NOUN = "{% set noun = 'incident' if task.task_type == 'INCIDENT' else 'task' %}"
_TZ = "recipient.timezone"
_GREETING = "Hello {{ recipient.name or 'there' }},\n\n"
_FACTS = (
    "\n\n"
    "Title:      {{ task.title }}\n"
    "Priority:   {{ task.priority }}\n"
    "Status:     {{ task.status }}\n"
    "Type:       {{ task.task_type }}\n"
    "{% if task.customer_tier %}Customer:   {{ task.customer_tier }}\n{% endif %}"
    "Assignee:   {{ assignee or 'unassigned' }}\n"
    "{% if link %}Open:       {{ link }}\n{% endif %}"
)
_SIGNOFF = (
    "\n\n-- \n{{ app_name or 'OpsFlow' }}: automated notification. Choose the channels you"
    " are notified on in your notification preferences.\n"
)
_DEADLINES = (
    "{% if task.start_deadline %}Response due:   {{ task.start_deadline | datetime("
    + _TZ
    + ") }}\n{% endif %}"
    "{% if task.resolve_deadline %}Resolution due: {{ task.resolve_deadline | datetime("
    + _TZ
    + ") }}\n{% endif %}"
)
_SLA_INTRO = (
    "The {{ sla.sla_type | sla_label }} deadline of {{ task.priority }} {{ noun }}"
    ' "{{ task.title }}" '
)
_DUE = "{{ sla.expected_deadline | datetime(" + _TZ + ") }}"
_SMS_DUE = "{{ sla.expected_deadline | datetime(" + _TZ + ", short=True) }}"
_SMS_TITLE = '{{ noun }} "{{ task.title | truncate(60) }}"'
_SMS_LINK = "{% if link %} {{ link }}{% endif %}"
_SLACK_WHO = (
    "\nAssignee: {{ assignee or 'unassigned' }}"
    "{% if sla.sla_type %} | {{ sla.sla_type | sla_label | capitalize }} due {{ "
    "sla.expected_deadline | datetime(" + _TZ + ") }}{% endif %}"
)

_EMAIL_SUBJECTS = {
    "sla.warning": "SLA Warning: {{ task.title }}",
    "sla.critical": "SLA Critical: {{ task.title }}",
    "sla.breach": "SLA Breach: {{ task.title }}",
    "escalation.fired": "Escalation (level {{ escalation.level }}): {{ task.title }}",
    "task.created": "New {{ task.priority }} {{ noun }}: {{ task.title }}",
    "task.assigned": "Assigned to you: {{ task.title }}",
    "task.resolved": "Resolved: {{ task.title }}",
}
_EMAIL_BODIES = {
    "sla.warning": _SLA_INTRO + "is approaching: it is due " + _DUE + ".\n\n"
    "Please {{ 'acknowledge or start' if sla.sla_type == 'START' else 'resolve' }} it"
    " before then to stay within the SLA.",
    "sla.critical": _SLA_INTRO + "is about to be breached: it is due " + _DUE + ".\n\n"
    "Act now: once the deadline passes the breach is recorded and escalation begins.",
    "sla.breach": _SLA_INTRO + "has been breached: it was due " + _DUE + ".\n\n"
    "The breach has been recorded against the SLA; the escalation policy may notify"
    " further people until the {{ noun }} is"
    " {{ 'acknowledged' if sla.sla_type == 'START' else 'resolved' }}.",
    "escalation.fired": '{{ noun | capitalize }} "{{ task.title }}" has been escalated to you'
    " (level {{ escalation.level }}"
    '{% if escalation.policy %}, policy "{{ escalation.policy }}"{% endif %}).'
    "{% if escalation.message %}\n\n{{ escalation.message }}{% endif %}",
    "task.created": "A new {{ task.priority }} {{ noun }} was created"
    '{% if actor.name %} by {{ actor.name }}{% endif %}: "{{ task.title }}".\n\n' + _DEADLINES,
    "task.assigned": '{{ noun | capitalize }} "{{ task.title }}" has been assigned to you'
    "{% if actor.name %} by {{ actor.name }}{% endif %}.\n\n" + _DEADLINES,
    "task.resolved": '{{ noun | capitalize }} "{{ task.title }}" has been resolved'
    "{% if actor.name %} by {{ actor.name }}{% endif %}."
    "{% if task.resolution_notes %}\n\nResolution notes:\n{{ task.resolution_notes }}{% endif %}",
}
_SLACK_TITLES = {
    "sla.warning": "SLA warning: {{ task.title }}",
    "sla.critical": "SLA critical: {{ task.title }}",
    "sla.breach": "SLA breached: {{ task.title }}",
    "escalation.fired": "Escalated (level {{ escalation.level }}): {{ task.title }}",
    "task.created": "New {{ task.priority }} {{ noun }}: {{ task.title }}",
    "task.assigned": "Assigned: {{ task.title }}",
    "task.resolved": "Resolved: {{ task.title }}",
}
_SLACK_BODIES = {
    "sla.warning": ":warning: *SLA warning*: the {{ sla.sla_type | sla_label }} deadline of"
    " {{ task.priority }} {{ noun }} *{{ task.title }}* is approaching." + _SLACK_WHO,
    "sla.critical": ":rotating_light: *SLA critical*: the {{ sla.sla_type | sla_label }}"
    " deadline of {{ task.priority }} {{ noun }} *{{ task.title }}* is about to be breached."
    + _SLACK_WHO,
    "sla.breach": ":red_circle: *SLA breached*: the {{ sla.sla_type | sla_label }} deadline of"
    " {{ task.priority }} {{ noun }} *{{ task.title }}* has passed." + _SLACK_WHO,
    "escalation.fired": ":mega: *Escalated to level {{ escalation.level }}*: {{ task.priority }}"
    " {{ noun }} *{{ task.title }}*"
    "{% if escalation.message %}\n> {{ escalation.message }}{% endif %}" + _SLACK_WHO,
    "task.created": ":new: *New {{ task.priority }} {{ noun }}*: *{{ task.title }}*"
    "{% if actor.name %} (created by {{ actor.name }}){% endif %}",
    "task.assigned": ":bust_in_silhouette: *Assigned* to {{ assignee or 'you' }}:"
    " {{ task.priority }} {{ noun }} *{{ task.title }}*"
    "{% if actor.name %} (by {{ actor.name }}){% endif %}",
    "task.resolved": ":white_check_mark: *Resolved*: {{ noun }} *{{ task.title }}*"
    "{% if actor.name %} by {{ actor.name }}{% endif %}",
}
_SMS_BODIES = {
    "sla.warning": "OpsFlow SLA warning: {{ task.priority }} "
    + _SMS_TITLE
    + " {{ sla.sla_type | sla_label }} due "
    + _SMS_DUE
    + "."
    + _SMS_LINK,
    "sla.critical": "OpsFlow SLA CRITICAL: {{ task.priority }} "
    + _SMS_TITLE
    + " {{ sla.sla_type | sla_label }} due "
    + _SMS_DUE
    + "."
    + _SMS_LINK,
    "sla.breach": "OpsFlow SLA BREACH: {{ task.priority }} "
    + _SMS_TITLE
    + " {{ sla.sla_type | sla_label }} was due "
    + _SMS_DUE
    + "."
    + _SMS_LINK,
    "escalation.fired": "OpsFlow escalation L{{ escalation.level }}: {{ task.priority }} "
    + _SMS_TITLE
    + " needs your attention."
    + _SMS_LINK,
    "task.created": "OpsFlow: new {{ task.priority }} " + _SMS_TITLE + "." + _SMS_LINK,
    "task.assigned": "OpsFlow: {{ task.priority }} " + _SMS_TITLE + " assigned to you." + _SMS_LINK,
    "task.resolved": "OpsFlow: " + _SMS_TITLE + " resolved." + _SMS_LINK,
}
_HTML = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{{ subject }}</title></head>
<body style="margin:0;padding:24px;font-family:-apple-system,'Segoe UI',Helvetica,Arial,\
sans-serif;font-size:14px;line-height:1.5;color:#1f2933;background:#f5f7fa">
<div style="max-width:640px;margin:0 auto;background:#ffffff;border-radius:6px;padding:24px">
<h1 style="margin:0 0 16px;font-size:18px">{{ subject }}</h1>
<div style="white-space:pre-line">{{ body }}</div>
{% if link and (link.startswith('https://') or link.startswith('http://')) %}
<p style="margin:24px 0 0"><a href="{{ link }}" style="background:#2563eb;color:#ffffff;\
padding:10px 16px;border-radius:4px;text-decoration:none">\
Open in {{ app_name or 'OpsFlow' }}</a></p>
{% endif %}
</div>
</body>
</html>
"""
_GENERIC = {
    (Channel.EMAIL, "subject"): "{{ app_name or 'OpsFlow' }}: {{ event }}"
    "{% if task.title %}: {{ task.title }}{% endif %}",
    (Channel.EMAIL, "body"): _GREETING
    + 'Event {{ event }} for {{ noun }} "{{ task.title }}".'
    + _FACTS
    + _SIGNOFF,
    (Channel.SLACK, "title"): "{{ event }}: {{ task.title }}",
    (Channel.SLACK, "body"): "*{{ event }}*: {{ noun }} *{{ task.title }}*",
    (Channel.SMS, "body"): "OpsFlow {{ event }}: " + _SMS_TITLE + _SMS_LINK,
}


def _default_source(event: str, channel: Channel, part: str) -> str:
    event = canonical_event(event)
    if part == "html":
        return _HTML
    if event not in EVENTS:
        return _NOUN + _GENERIC[(channel, part)]
    table = {
        (Channel.EMAIL, "subject"): _EMAIL_SUBJECTS,
        (Channel.EMAIL, "body"): {
            e: _GREETING + body + _FACTS + _SIGNOFF for e, body in _EMAIL_BODIES.items()
        },
        (Channel.SLACK, "title"): _SLACK_TITLES,
        (Channel.SLACK, "body"): _SLACK_BODIES,
        (Channel.SMS, "body"): _SMS_BODIES,
    }[(channel, part)]
    return _NOUN + table[event]
