"""The audit hash chain (`audit/chain.py`) and the hashed content of a row (`row_content`)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opsflow.audit.chain import (
    GENESIS_HASH,
    HASHED_FIELDS,
    SEAL_SEPARATOR,
    canonical,
    chain_hash,
    unsealed,
)
from opsflow.audit.writer import row_content
from opsflow.models.audit import AuditLog

T0 = datetime(2026, 1, 27, 10, 30, tzinfo=UTC)


def make_row(seq: int = 1, **overrides: Any) -> AuditLog:
    values: dict[str, Any] = {
        "id": uuid.UUID("11111111-1111-4111-8111-111111111111"),
        "seq": seq,
        "entity_type": "task",
        "entity_id": uuid.UUID("22222222-2222-4222-8222-222222222222"),
        "action": "TASK_UPDATED",
        "actor_type": "user",
        "actor_id": uuid.UUID("33333333-3333-4333-8333-333333333333"),
        "actor_name": "alice",
        "previous_state": {"status": "ASSIGNED"},
        "new_state": {"status": "IN_PROGRESS"},
        "changes": {"status": {"from": "ASSIGNED", "to": "IN_PROGRESS"}},
        "ip_address": "10.0.0.1",
        "user_agent": "pytest",
        "request_id": "req-1",
        "timestamp": T0,
        "metadata_": {"reason": "go"},
        "prev_hash": GENESIS_HASH,
    }
    values.update(overrides)
    return AuditLog(**values)


def seal(row: AuditLog) -> AuditLog:
    row.hash = chain_hash(row.prev_hash, row_content(row))
    return row


def test_genesis() -> None:
    assert GENESIS_HASH == "0" * 64


def test_hash_is_sha256_of_prev_hash_and_canonical_json() -> None:
    content = row_content(make_row())
    expected = hashlib.sha256(GENESIS_HASH.encode() + b"\n" + canonical(content)).hexdigest()
    assert chain_hash(GENESIS_HASH, content) == expected
    assert len(expected) == 64


def test_canonical_is_sorted_compact_and_limited_to_hashed_fields() -> None:
    content = {**row_content(make_row()), "hash": "x", "prev_hash": "y", "extra": 1}
    text = canonical(content).decode()
    parsed = json.loads(text)
    assert list(parsed) == sorted(HASHED_FIELDS)
    assert ", " not in text
    assert ": " not in text
    # Key order of the input does not matter.
    assert canonical(dict(reversed(list(content.items())))) == canonical(content)


def test_canonical_keeps_non_ascii_and_refuses_nan() -> None:
    assert "é".encode() in canonical({"actor_name": "é"})
    with pytest.raises(ValueError, match="JSON"):
        canonical({"metadata": {"x": float("nan")}})


@pytest.mark.parametrize("seq", [1, 9, 10, 123456789012])
def test_unsealed_content_around_the_seq_is_the_canonical_json(seq: int) -> None:
    """What the database seals (migration 0025): the text before and after the value of
    "seq", which nested "seq" keys, quotes and control characters cannot confuse."""
    awkward = {"seq": 1, "q": ',"seq":2,', "c": SEAL_SEPARATOR, "é": ["✓", None, 1.5]}
    content = row_content(make_row(seq, metadata_=awkward, user_agent=None, ip_address="é"))
    text = unsealed(content)
    assert text.count(SEAL_SEPARATOR) == 1
    before, after = text.split(SEAL_SEPARATOR)
    assert (before + str(seq) + after).encode() == canonical(content)


def test_row_content_covers_exactly_the_hashed_fields() -> None:
    content = row_content(make_row())
    assert set(content) == set(HASHED_FIELDS)
    assert content["id"] == "11111111-1111-4111-8111-111111111111"
    assert content["entity_id"] == "22222222-2222-4222-8222-222222222222"
    assert content["actor_id"] == "33333333-3333-4333-8333-333333333333"
    assert content["timestamp"] == "2026-01-27T10:30:00Z"
    assert content["metadata"] == {"reason": "go"}


def test_row_content_same_when_read_back_naive() -> None:
    # SQLite hands timestamps back without tzinfo; the hash must not change.
    fresh = make_row(timestamp=datetime(2026, 1, 27, 10, 30, 0, 123456, tzinfo=UTC))
    read_back = make_row(timestamp=datetime(2026, 1, 27, 10, 30, 0, 123456))
    assert row_content(fresh) == row_content(read_back)
    assert row_content(fresh)["timestamp"] == "2026-01-27T10:30:00.123456Z"


def test_row_content_system_actor_without_id() -> None:
    assert row_content(make_row(actor_id=None, actor_type="system"))["actor_id"] is None


def build_chain(length: int) -> list[AuditLog]:
    rows: list[AuditLog] = []
    prev = GENESIS_HASH
    for seq in range(1, length + 1):
        row = seal(
            make_row(
                seq,
                id=uuid.uuid4(),
                prev_hash=prev,
                timestamp=T0 + timedelta(seconds=seq),
                new_state={"n": seq},
            )
        )
        rows.append(row)
        prev = row.hash
    return rows


def first_broken(rows: list[AuditLog]) -> int | None:
    """A verifier written from the definition: each row links to and hashes over its parent."""
    prev = GENESIS_HASH
    for row in rows:
        if row.prev_hash != prev or chain_hash(row.prev_hash, row_content(row)) != row.hash:
            return row.seq
        prev = row.hash
    return None


def test_intact_chain_verifies() -> None:
    rows = build_chain(5)
    assert first_broken(rows) is None
    assert len({r.hash for r in rows}) == 5


def test_same_content_different_parent_differs() -> None:
    content = row_content(make_row())
    assert chain_hash(GENESIS_HASH, content) != chain_hash("f" * 64, content)


# Each hashed field with a different value of the right type.
TAMPERED: dict[str, Any] = {
    "seq": 99,
    "id": uuid.UUID("44444444-4444-4444-8444-444444444444"),
    "entity_type": "team",
    "entity_id": uuid.UUID("55555555-5555-4555-8555-555555555555"),
    "action": "TASK_DELETED",
    "actor_type": "api",
    "actor_id": None,
    "actor_name": "mallory",
    "previous_state": {"status": "CREATED"},
    "new_state": {"status": "COMPLETED"},
    "changes": {},
    "ip_address": "10.0.0.2",
    "user_agent": "curl",
    "request_id": "req-2",
    "timestamp": T0 + timedelta(microseconds=1),
    "metadata_": {"reason": "stop"},
}


def test_tamper_table_covers_every_hashed_field() -> None:
    names = {"metadata" if k == "metadata_" else k for k in TAMPERED}
    assert names == set(HASHED_FIELDS)


@pytest.mark.parametrize("field", list(TAMPERED))
def test_changing_any_hashed_field_breaks_the_chain(field: str) -> None:
    rows = build_chain(3)
    setattr(rows[1], field, TAMPERED[field])
    assert chain_hash(rows[1].prev_hash, row_content(rows[1])) != rows[1].hash
    assert first_broken(rows) == (99 if field == "seq" else 2)


def test_rehashing_a_tampered_row_breaks_its_child() -> None:
    rows = build_chain(3)
    rows[1].actor_name = "mallory"
    seal(rows[1])
    assert first_broken(rows) == 3


def test_relinking_prev_hash_is_detected() -> None:
    rows = build_chain(3)
    rows[2].prev_hash = rows[0].hash
    assert first_broken(rows) == 3


def test_deleting_a_row_is_detected() -> None:
    rows = build_chain(4)
    del rows[1]
    assert first_broken(rows) == 3
