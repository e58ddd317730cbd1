"""The SQL statements a block of test code sends, as the database engine sees them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from opsflow.context import AppContext


@contextmanager
def statements(ctx: AppContext) -> Iterator[list[str]]:
    """Every statement the context's engine sends inside the block, in order."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", record)


def selects_from(seen: list[str], table: str) -> int:
    """How many of `seen` are SELECTs reading `table`."""
    return sum(
        1 for s in seen if s.lstrip().startswith("SELECT") and re.search(rf"\bFROM {table}\b", s)
    )
