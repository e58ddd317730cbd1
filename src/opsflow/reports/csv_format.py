"""A report as CSV (RFC 4180): one row per number, `section,item,field,value`.

`section` is the dotted path of the object or list the number belongs to, `item` the
1-based position of the row in that list (empty outside lists) and `field` the dotted
path inside it. Cells a spreadsheet would read as a formula (starting with = + - @, a tab
or a carriage return) are prefixed with a quote; negative numbers are written as numbers
and never start a text cell.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

HEADER = ("section", "item", "field", "value")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def _fields(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _fields(inner, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, value


def rows(report: dict[str, Any]) -> Iterator[tuple[str, str, str, Any]]:
    for section, value in report.items():
        if isinstance(value, list):
            for index, item in enumerate(value, start=1):
                for field, inner in _fields(item, ""):
                    yield section, str(index), field, inner
        elif isinstance(value, dict):
            for field, inner in _fields(value, ""):
                yield section, "", field, inner
        else:
            yield section, "", "", value


def render(report: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    for section, item, field, value in _expanded(report):
        writer.writerow((safe_cell(section), item, safe_cell(field), safe_cell(value)))
    return buffer.getvalue()


def _expanded(report: dict[str, Any]) -> Iterator[tuple[str, str, str, Any]]:
    """Lists nested in objects become sections of their own (`incident_metrics.top_categories`)."""
    flat: dict[str, Any] = {}
    for key, value in report.items():
        if isinstance(value, dict):
            plain = {k: v for k, v in value.items() if not isinstance(v, list)}
            flat[key] = plain
            for k, v in value.items():
                if isinstance(v, list):
                    flat[f"{key}.{k}"] = v
        else:
            flat[key] = value
    yield from rows(flat)
