"""Reporting every problem of an SLA configuration at once, each with the path where it is.

Shared by the calendar format (``sla.calendar_format``) and the configuration package
(``opsflow.sla_config``): the error type, the collector, and short, printable renderings of
whatever a document may hold (never huge, never raising).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Final

MAX_ERRORS: Final = 200  # entries kept in a PolicyConfigError (plus one "and N more")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")

ErrorEntry = dict[str, str]


class PolicyConfigError(ValueError):
    """An invalid SLA configuration. ``errors`` lists every problem as ``{path, message}``."""

    def __init__(self, errors: Iterable[Mapping[str, str]]) -> None:
        entries = [{"path": str(e["path"]), "message": str(e["message"])} for e in errors]
        if not entries:
            entries = [{"path": "", "message": "invalid SLA configuration"}]
        if len(entries) > MAX_ERRORS:
            more = len(entries) - MAX_ERRORS
            entries = [*entries[:MAX_ERRORS], {"path": "", "message": f"... and {more} more"}]
        self.errors: list[ErrorEntry] = entries
        shown = "; ".join(
            f"{e['path']}: {e['message']}" if e["path"] else e["message"] for e in entries[:5]
        )
        count = len(entries)
        super().__init__(
            f"invalid SLA configuration ({count} error{'s' if count != 1 else ''}): {shown}"
        )


class Problems:
    def __init__(self) -> None:
        self.items: list[ErrorEntry] = []

    def add(self, path: str, message: str) -> None:
        self.items.append({"path": path, "message": message})

    def __len__(self) -> int:
        return len(self.items)


def short(value: object, limit: int = 60) -> str:
    """A short, printable rendering of a scalar (never huge, never raising)."""
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, bool):
        text = {None: "null", True: "true", False: "false"}[value]
    elif isinstance(value, int):
        text = str(value) if value.bit_length() <= 200 else "<a very large integer>"
    elif isinstance(value, float | date):
        text = str(value)
    else:
        text = f"<{type(value).__name__}>"
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def describe(value: object) -> str:
    if value is None or isinstance(value, bool):
        return short(value)
    if isinstance(value, int | float):
        return f"the number {short(value)}"
    if isinstance(value, str):
        return f"the string '{short(value)}'"
    if isinstance(value, datetime):
        return "a timestamp"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a value of type {type(value).__name__}"


def join(path: str, key: object) -> str:
    text = short(key)
    return f"{path}.{text}" if path else text


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def as_mapping(value: object, path: str, errors: Problems, what: str) -> dict[Any, Any] | None:
    """``value`` as a mapping (``None`` counts as empty); an error and ``None`` otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.add(path, f"{what} must be a mapping, got {describe(value)}")
        return None
    return value


def unknown_keys(
    value: Mapping[Any, Any], allowed: Sequence[str], path: str, errors: Problems
) -> None:
    for key in value:
        if key not in allowed:
            errors.add(join(path, key), f"unknown key; expected one of: {', '.join(allowed)}")


def name_problem(value: object, what: str) -> str | None:
    if not isinstance(value, str):
        return f"{what} name must be a string (quote it), got {describe(value)}"
    if not _NAME_RE.fullmatch(value):
        return (
            f"{what} name must be 1-100 letters, digits, '_', '.' or '-', starting with a "
            f"letter or digit, got '{short(value)}'"
        )
    return None
