"""What changed between two states of an entity, as audit rows record it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def field_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{field: {"from": old, "to": new}}`` for every field whose value differs (a missing
    field counts as None), sorted by field name."""
    return {
        key: {"from": old.get(key), "to": new.get(key)}
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    }
