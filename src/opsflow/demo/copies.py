"""Copies of a played history, shifted in time: how a large demo month is written fast.

Playing a task through the real rules costs a few milliseconds; a million of them would
take hours. A large month therefore plays one task in every `every` (the last of each
run of consecutive creation instants) and writes the others as copies of it: the same
rows with fresh ids, every instant moved back by the gap between the two creations (a
few seconds to minutes). Inside the copy, ids the history owns (the task, its clocks,
SLA events, comments, escalation steps, notifications, outbox events) are replaced
wherever they appear — columns, JSON documents, text such as a notification's dedup key —
and every instant is shifted, in columns and in JSON text alike.

Exact for 24x7 clocks. A business-hours deadline is the played one moved back, which
differs from what the calendar gives for the copy's creation where the shift crosses an
opening or closing time: by up to the gap mostly, by a whole closed stretch (a night, a
weekend) when the two deadlines fall on either side of one. A copy's history ends the
gap before the end of the month, like an engine running that much behind. Audit rows are
re-chained with their own ids and sequence numbers (`AuditCopy.render`), so `opsflow audit
verify` checks them like any other row.
Copies write no outbox events: the outbox is a delivery queue, and every event of the
demo's past was delivered.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, inspect
from sqlalchemy.dialects import postgresql

from opsflow.audit import writer as audit_writer
from opsflow.audit.chain import HASHED_FIELDS
from opsflow.kit.jsonable import to_jsonable

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_INSTANT = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:[+-]\d{2}:\d{2}|Z)"
_TOKENS = re.compile(f"({_UUID})|({_INSTANT})")


_IDS = random.Random()  # noqa: S311 - demo ids, like uuid4 but cheaper
_new = object.__new__
_set = object.__setattr__
_VERSION_4 = (0x4000 << 64) | (0x8000 << 48)
_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48))


def new_id() -> uuid.UUID:
    """A random version 4 UUID (what `uuid.uuid4()` gives, built without its checks)."""
    value = _new(uuid.UUID)
    _set(value, "int", _IDS.getrandbits(128) & _VERSION_MASK | _VERSION_4)
    _set(value, "is_safe", uuid.SafeUUID.unknown)
    return value


class RawJson(str):
    """A JSON document already as its text (written as is by COPY, parsed for INSERT)."""

    __slots__ = ()


def dumps(value: Any) -> str:
    """The canonical JSON text of a value (the audit chain's form)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# A piece of text: a literal, an owned id (its text) or an instant (its value).
Piece = str | tuple[str, Any]


def _pieces(text: str, owned: set[str]) -> list[Piece] | None:
    """`text` split into literals, owned ids and instants; None when it holds neither."""
    pieces: list[Piece] = []
    position = 0
    for match in _TOKENS.finditer(text):
        if match.group(1) is not None and match.group(1) not in owned:
            continue
        pieces.append(text[position : match.start()])
        if match.group(1) is not None:
            pieces.append(("id", match.group(1)))
        else:
            text_at = match.group(2)
            pieces.append(("Z" if text_at.endswith("Z") else "at", datetime.fromisoformat(text_at)))
        position = match.end()
    if not pieces:
        return None
    pieces.append(text[position:])
    return pieces


@dataclass
class Shift:
    """One copy: its fresh ids (by the played history's id) and its shift in time."""

    ids: dict[uuid.UUID, uuid.UUID]
    texts: dict[str, str]
    delta: timedelta

    @classmethod
    def new(cls, owned: Iterable[uuid.UUID], delta: timedelta) -> Shift:
        ids = {old: new_id() for old in owned}
        return cls(ids, {str(old): str(new) for old, new in ids.items()}, delta)

    def text(self, pieces: list[Piece]) -> str:
        out = []
        for piece in pieces:
            if isinstance(piece, str):
                out.append(piece)
            elif piece[0] == "id":
                out.append(self.texts[piece[1]])
            elif piece[0] == "Z":  # `to_jsonable`'s form
                out.append((piece[1] + self.delta).isoformat().replace("+00:00", "Z"))
            else:
                out.append((piece[1] + self.delta).isoformat())
        return "".join(out)


# How a column's value is copied.
Rule = Callable[[Any, Shift], Any]


def _constant(value: Any, _shift: Shift) -> Any:
    return value


def _instant(value: Any, shift: Shift) -> Any:
    return value + shift.delta


def _id(value: Any, shift: Shift) -> Any:
    return shift.ids[value]


def _compile_value(value: Any, is_json: bool, owned: set[uuid.UUID], texts: set[str]) -> Any:
    """(rule, argument) copying one column value."""
    if isinstance(value, datetime):
        return _instant, value
    if isinstance(value, uuid.UUID):
        return (_id, value) if value in owned else (_constant, value)
    if is_json:
        text = dumps(to_jsonable(value))
        pieces = _pieces(text, texts)
        if pieces is None:
            return _constant, RawJson(text)
        return (lambda p, s: RawJson(s.text(p))), pieces
    if isinstance(value, str):
        pieces = _pieces(value, texts)
        if pieces is not None:
            return (lambda p, s: s.text(p)), pieces
    return _constant, value


_JSON_KEYS: dict[type, set[str]] = {}


def json_keys(model: type) -> set[str]:
    """The attribute keys of a model's JSON columns."""
    if model not in _JSON_KEYS:
        keys = set()
        mapper: Any = inspect(model)
        for attr in mapper.column_attrs:
            column_type = attr.columns[0].type
            if isinstance(column_type, JSON) or isinstance(column_type.dialect_impl(_PG), JSON):
                keys.add(attr.key)
        _JSON_KEYS[model] = keys
    return _JSON_KEYS[model]


# A model's columns in the order of its records: (attribute key, default value).
Columns = Callable[[type], Sequence[tuple[str, Any]]]


@dataclass
class RowCopy:
    """One row of the played history, compiled: its model and a rule per column."""

    model: type
    rules: list[tuple[Rule, Any]]

    def render(self, shift: Shift) -> tuple[Any, ...]:
        """The copy's record: its values in the order `columns` gave."""
        return tuple([rule(argument, shift) for rule, argument in self.rules])


def _row_copy(row: Any, columns: Columns, owned: set[uuid.UUID], texts: set[str]) -> RowCopy:
    model = type(row)
    keys = json_keys(model)
    rules: list[tuple[Rule, Any]] = []
    for key, default in columns(model):
        # A value never set is the column's default, like the original's.
        value = row.__dict__.get(key, default)
        rules.append(_compile_value(value, key in keys, owned, texts))
    return RowCopy(model, rules)


# The hashed fields in canonical order (sorted keys), with their attribute names.
_SORTED = sorted(HASHED_FIELDS)


@dataclass
class AuditCopy:
    """One audit row of the played history, compiled: its hashed content as canonical text
    with holes for its sequence number, id, owned ids and instants."""

    values: dict[str, Any]
    fields: list[tuple[str, Any]]  # (hashed field, pieces or constant text or None)
    timestamp: datetime

    def render(self, shift: Shift, seq: int, prev_hash: str) -> dict[str, Any]:
        """The copied row's column values (by attribute name), chained after `prev_hash`."""
        row_id = new_id()
        texts: dict[str, str] = {}
        parts = []
        for name, value in self.fields:
            if name == "seq":
                text = str(seq)
            elif name == "id":
                text = f'"{row_id}"'
            elif isinstance(value, list):
                text = shift.text(value)
            else:
                text = value
            texts[name] = text
            parts.append(f'"{name}":{text}')
        canonical = "{" + ",".join(parts) + "}"
        digest = hashlib.sha256(prev_hash.encode() + b"\n" + canonical.encode()).hexdigest()
        row = dict(self.values)
        entity = row["entity_id"]
        row.update(
            id=row_id,
            seq=seq,
            entity_id=shift.ids.get(entity, entity),
            timestamp=self.timestamp + shift.delta,
            previous_state=RawJson(texts["previous_state"]),
            new_state=RawJson(texts["new_state"]),
            changes=RawJson(texts["changes"]),
            metadata_=RawJson(texts["metadata"]),
            prev_hash=prev_hash,
            hash=digest,
        )
        return row


def _audit_copy(pending: audit_writer.Pending, texts: set[str]) -> AuditCopy:
    values = audit_writer.chain([pending], 0, "")[0]
    content = audit_writer.content(values)
    fields: list[tuple[str, Any]] = []
    for name in _SORTED:
        if name in ("seq", "id"):
            fields.append((name, None))
            continue
        text = dumps(content[name])
        pieces = _pieces(text, texts)
        fields.append((name, text if pieces is None else pieces))
    return AuditCopy(values, fields, pending.timestamp)


@dataclass
class Template:
    """A played history ready to be copied: its rows and its audit rows, compiled."""

    owned: list[uuid.UUID]
    rows: list[RowCopy]
    audit: list[AuditCopy]

    def copy(self, delta: timedelta) -> tuple[list[tuple[Any, ...]], list[tuple[AuditCopy, Shift]]]:
        """The rows of one copy moved by `delta` (records, in the order of the played
        rows), and its audit rows to chain (in the order they were written)."""
        shift = Shift.new(self.owned, delta)
        return [row.render(shift) for row in self.rows], [(item, shift) for item in self.audit]


def compile_template(
    rows: list[Any],
    audit: list[audit_writer.Pending],
    owned: Iterable[uuid.UUID],
    columns: Columns,
) -> Template:
    """`owned`: the ids this history created (every other id, such as a user's, is kept);
    `columns`: the columns of a model's records, in order, with their defaults."""
    owned_ids = set(owned)
    texts = {str(value) for value in owned_ids}
    return Template(
        list(owned_ids),
        [_row_copy(row, columns, owned_ids, texts) for row in rows],
        [_audit_copy(item, texts) for item in audit],
    )
