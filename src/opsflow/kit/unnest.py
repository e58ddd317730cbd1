"""Multi-row statements on PostgreSQL built from arrays, one array per column.

SQLAlchemy sends a list of rows to asyncpg as an executemany, which runs its statement once
per row on the server, and with it, once per row, the table's statement-level triggers.
``INSERT ... SELECT FROM unnest(arrays)`` and ``UPDATE ... FROM unnest(arrays)`` run once
for all the rows. :func:`array_of` is the one rule for how a column's values travel as an
array (`insert` here; `tasks.bulk` for its UPDATEs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession


def array_of(column: Any, dialect: Dialect) -> tuple[str, str | None, Callable[[Any], Any] | None]:
    """How `column`'s values travel as an array: the array's element type, the type to cast
    each element to in the statement (None: none needed), and the bind processor of a value.

    JSON values go as text, cast to the column's JSON type. The others go as arrays of the
    column's type without its length (VARCHAR(500) -> VARCHAR): an explicit cast to
    VARCHAR(n) would cut a longer value silently, where the assignment to the column refuses
    it, as a plain INSERT or UPDATE does.
    """
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    name = column.type.compile(dialect=dialect)
    if name in ("JSON", "JSONB"):
        return "TEXT", name, process
    return name.split("(")[0], None, process


@dataclass(frozen=True)
class _Column:
    """One column of a PostgreSQL multi-row insert: the row key its values are read from
    (None: the column's Python-side default, `default`, made for each row) and what binds
    a value (the column type's bind processor)."""

    key: str | None
    process: Callable[[Any], Any] | None
    default: Callable[[], Any] | None = None


_INSERTS: dict[tuple[str, tuple[str, ...]], tuple[Any, list[_Column]]] = {}


def _default(column: Any) -> Callable[[], Any] | None:
    """The Python-side default of a column, as a call made for each row (None: none, the
    column is left out of the insert, as SQLAlchemy leaves it)."""
    default = column.default
    if default is None:
        return None
    if default.is_scalar:
        value = default.arg
        return lambda: value
    if default.is_callable:
        make = default.arg
        return lambda: make(None)  # SQLAlchemy's wrapper of a callable taking no context
    raise ValueError(f"column {column.name}: a default insert_rows cannot make")


def _insert_of(model: type[Any], keys: tuple[str, ...], dialect: Any) -> tuple[Any, list[_Column]]:
    """The INSERT ... SELECT FROM unnest of `model`'s table for rows with these keys
    (attribute or column names), and how each array is made. Built once per table and keys.
    JSON values go as text, cast in the statement (`array_of`)."""
    table = model.__table__
    built = _INSERTS.get((table.name, keys))
    if built is not None:
        return built
    names = {a.key: a.columns[0].name for a in sa_inspect(model).column_attrs}
    by_column = {names.get(key, key): key for key in keys}
    unknown = set(by_column) - set(table.columns.keys())
    if unknown:
        raise ValueError(f"insert_rows: no column {sorted(unknown)} in {table.name}")
    targets: list[str] = []
    arrays: list[str] = []
    selected: list[str] = []
    columns: list[_Column] = []
    for column in table.columns:
        key = by_column.get(column.name)
        default = None if key is not None else _default(column)
        if key is None and default is None:
            continue
        n = len(columns)
        element, json_type, process = array_of(column, dialect)
        arrays.append(f"CAST(:c{n} AS {element}[])")
        selected.append(f"CAST(v.c{n} AS {json_type})" if json_type else f"v.c{n}")
        targets.append(f'"{column.name}"')
        columns.append(_Column(key, process, default))
    aliases = ", ".join(f"c{n}" for n in range(len(columns)))
    # WITH ORDINALITY ... ORDER BY: the rows go in as given (the audit rows' seal follows
    # the order they were inserted in).
    statement = text(
        f"INSERT INTO {table.name} ({', '.join(targets)}) "  # noqa: S608
        f"SELECT {', '.join(selected)} FROM unnest({', '.join(arrays)}) "
        f"WITH ORDINALITY AS v({aliases}, ord) ORDER BY v.ord"
    )
    _INSERTS[(table.name, keys)] = (statement, columns)
    return statement, columns


async def insert(session: AsyncSession, model: type[Any], rows: list[dict[str, Any]]) -> None:
    keys = tuple(rows[0])
    statement, columns = _insert_of(model, keys, session.get_bind().dialect)
    params: dict[str, list[Any]] = {}
    for n, column in enumerate(columns):
        if column.key is None:
            assert column.default is not None
            values = [column.default() for _ in rows]
        else:
            key = column.key
            values = [row[key] for row in rows]
        process = column.process
        params[f"c{n}"] = values if process is None else [process(v) for v in values]
    await session.execute(statement, params)
