"""The sandbox notification templates run in: Jinja2's immutable sandbox plus budgets.

No attribute starting with ``_``, no internals, no mutation of the context, no ``include``,
``import`` or ``extends`` (Jinja's immutable sandbox). On top of it: every loop iteration
and call spends from a per-render budget, numbers passed to filters and methods are capped,
operators and ``replace``/``format`` that would build a huge value are refused before they
run. A template can therefore neither stall a worker nor exhaust its memory. Escaping
follows the output mode: none for text, Slack's ``& < >`` for Slack mrkdwn, HTML
autoescaping for HTML. Filters beyond Jinja's: ``datetime(tz=None, short=False)`` and
``sla_label`` (START -> response, RESOLVE -> resolution).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Loop iterations plus calls one render may make.
ITERATION_BUDGET = 10_000
# Largest number a template may pass to a filter or method (``center(10**9)``).
MAX_INT_ARGUMENT = 100_000
# Largest string or list a template may build along the way.
MAX_VALUE_CHARS = 256 * 1024

Mode = Literal["text", "slack", "html"]
_BIG_FORMAT = re.compile(r"%[^a-zA-Z%]*\d{5}|\{[^{}]*:[^{}]*\d{5}")
BUDGET_VAR = "_opsflow_budget"


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


class Budget:
    """Work one render may do; private attributes only, so a template can hold it but not
    touch it."""

    def __init__(self, units: int) -> None:
        self._left = units

    def _spend(self, units: int = 1) -> None:
        self._left -= units
        if self._left < 0:
            raise SecurityError("template does too much work (loop or call budget exhausted)")


def _spend(context: Context, units: int = 1) -> None:
    budget = context.get(BUDGET_VAR)
    if not isinstance(budget, Budget):
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


class SandboxedEnvironment(ImmutableSandboxedEnvironment):
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


def budget_loops(tree: nodes.Template) -> nodes.Template:
    for loop in tree.find_all(nodes.For):
        loop.iter = nodes.Filter(loop.iter, "_budget", [], [], None, None, lineno=loop.lineno)
    return tree
