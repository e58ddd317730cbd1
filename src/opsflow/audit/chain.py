"""The audit hash chain (pure): each row's hash covers its content and the previous hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

GENESIS_HASH = "0" * 64

HASHED_FIELDS = (
    "seq",
    "id",
    "entity_type",
    "entity_id",
    "action",
    "actor_type",
    "actor_id",
    "actor_name",
    "previous_state",
    "new_state",
    "changes",
    "ip_address",
    "user_agent",
    "request_id",
    "timestamp",
    "metadata",
)


def _json(members: Mapping[str, Any]) -> str:
    return json.dumps(
        members, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def canonical(content: Mapping[str, Any]) -> bytes:
    return _json({name: content.get(name) for name in HASHED_FIELDS}).encode()


def chain_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(content)).hexdigest()


# Between the two halves of a row's content awaiting its place in the chain: a control
# character, which JSON always escapes inside strings, so it never occurs in the halves.
SEAL_SEPARATOR = "\x01"


def unsealed(content: Mapping[str, Any]) -> str:
    """The canonical JSON of `content` without its place in the chain, for the database to
    seal: the text before the value of ``"seq"`` and the text after it, joined by
    `SEAL_SEPARATOR`. ``before + str(seq) + after`` is exactly ``canonical()`` of the
    content with that `seq`, because the members are sorted and compact.
    """
    head = {name: content.get(name) for name in HASHED_FIELDS if name < "seq"}
    tail = {name: content.get(name) for name in HASHED_FIELDS if name > "seq"}
    before = _json(head)[:-1] + ',"seq":'
    after = "," + _json(tail)[1:]
    return before + SEAL_SEPARATOR + after
