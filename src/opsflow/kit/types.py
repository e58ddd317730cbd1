"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

_TIMESTAMPTZ_OID = 1184


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in and out, whatever the backend keeps.

    SQLite has no timezone type and hands back naive values; PostgreSQL uses
    ``timestamptz``. Either way the application only ever sees aware UTC instants,
    and naive input is rejected rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Any:
        # `process_bind_param` then the column type's own processor, as TypeDecorator
        # chains them, in one function: a batch binds tens of instants per row.
        inner = self.impl_instance.bind_processor(dialect)
        naive = dialect.name == "sqlite"

        def process(value: datetime | None) -> Any:
            if value is None:  # what every DateTime processor makes of None
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(UTC)
            if naive:
                value = value.replace(tzinfo=None)
            return inner(value) if inner is not None else value

        return process

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        # asyncpg decodes a `timestamptz` column (type oid 1184) to an aware UTC datetime
        # already: no per-value call for the columns the server says are `timestamptz` (a
        # page of tasks reads hundreds). Anything else goes through process_result_value.
        if dialect.driver == "asyncpg" and coltype == _TIMESTAMPTZ_OID:
            return self.impl_instance.result_processor(dialect, coltype)
        return super().result_processor(dialect, coltype)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is UTC:  # what asyncpg hands back: nothing to convert
            return value
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type() -> TypeEngine[Any]:
    """JSON on SQLite, JSONB on PostgreSQL."""
    return JSON().with_variant(JSONB(), "postgresql")
