"""Conditions on a task, as escalation policies and maintenance windows state them.

One rule: every key given must match the task (any of its values); `team` matches the
team's id or name; `tags` match on any tag in common; an empty set of conditions matches
every task. The schema is what the API accepts; `matches` is the one implementation,
used wherever stored conditions are checked against a task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from opsflow.kit.validation import NoNul
from opsflow.models.task import Task

ConditionValue = Annotated[str, StringConstraints(min_length=1, max_length=255), NoNul()]


class Conditions(BaseModel):
    """Every key given must match the task (any of its values); an empty object matches all."""

    model_config = ConfigDict(extra="forbid")

    priority: Annotated[
        list[Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]], Field(max_length=4)
    ] = []
    task_type: Annotated[list[Literal["TASK", "INCIDENT"]], Field(max_length=2)] = []
    customer_tier: Annotated[
        list[Literal["ENTERPRISE", "PREMIUM", "STANDARD", "BASIC"]], Field(max_length=4)
    ] = []
    service: Annotated[list[ConditionValue], Field(max_length=100)] = []
    team: Annotated[list[ConditionValue], Field(max_length=100)] = []  # team ids or names
    tags: Annotated[list[ConditionValue], Field(max_length=100)] = []  # any tag in common

    def given(self) -> dict[str, Any]:
        """Only the keys that constrain something (what is stored and matched)."""
        return {k: v for k, v in self.model_dump(mode="json").items() if v}


def matches(conditions: Mapping[str, Any], task: Task, team_name: str | None) -> bool:
    """Whether stored conditions (`Conditions.given()`) hold for the task of that team."""
    for key, attribute in (
        ("priority", task.priority),
        ("task_type", task.task_type),
        ("customer_tier", task.customer_tier),
        ("service", task.service),
    ):
        wanted = conditions.get(key) or []
        if wanted and attribute not in wanted:
            return False
    teams = conditions.get("team") or []
    if teams and str(task.team_id) not in teams and (team_name is None or team_name not in teams):
        return False
    tags = conditions.get("tags") or []
    return not (tags and not set(tags) & set(task.tags or []))
