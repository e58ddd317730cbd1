"""The one ``{field: {from, to}}`` rule that audit rows, entity changes and SLA configuration
diffs all use."""

from __future__ import annotations

from opsflow.kit.changes import field_changes


def test_diff_reports_changed_fields_only() -> None:
    before = {"status": "ASSIGNED", "priority": "HIGH", "tags": ["a"]}
    after = {"status": "IN_PROGRESS", "priority": "HIGH", "tags": ["a", "b"]}
    assert field_changes(before, after) == {
        "status": {"from": "ASSIGNED", "to": "IN_PROGRESS"},
        "tags": {"from": ["a"], "to": ["a", "b"]},
    }


def test_diff_added_and_removed_keys() -> None:
    assert field_changes({"a": 1}, {"b": 2}) == {
        "a": {"from": 1, "to": None},
        "b": {"from": None, "to": 2},
    }


def test_diff_missing_equals_none() -> None:
    assert field_changes({"a": None}, {}) == {}


def test_diff_of_equal_states_is_empty() -> None:
    state = {"a": 1, "b": {"c": [1, 2]}}
    assert field_changes(state, dict(state)) == {}


def test_fields_are_sorted_by_name() -> None:
    """One order everywhere (task, user and team audit rows, configuration entities, SLA
    configuration diffs): by field name, whatever order the states list them in."""
    assert list(field_changes({"z": 1, "a": 1}, {"z": 2, "a": 2})) == ["a", "z"]
    old = {"title": "a", "priority": "LOW", "status": "CREATED"}
    new = {"status": "ASSIGNED", "title": "b", "priority": "HIGH", "assignee": "x"}
    assert list(field_changes(old, new)) == ["assignee", "priority", "status", "title"]
