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


def canonical(content: Mapping[str, Any]) -> bytes:
    return json.dumps(
        {name: content.get(name) for name in HASHED_FIELDS},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode()


def chain_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(content)).hexdigest()
