"""Many tasks created or changed in one unit of work, written set-based.

Batch callers (ticket batches, the alert intake) apply the task rules to many tasks and
write the rows with a few multi-row statements instead of round trips per task:

- :class:`NewTasks` builds new tasks as rows: the values :func:`tasks.service.create_task`
  gives, their SLA clocks (planned once per policy and targets: the tasks of a batch share
  its instant, so those with the same policy and targets share the plan), their audit rows
  (queued to the hash chain like any other) and their outbox events; :meth:`NewTasks.write`
  inserts each kind with multi-row INSERTs, tasks first.
- :func:`write_changed` writes tasks changed in memory by deferred task commands
  (``TaskCommand(deferred=True)``: the rules applied, the version stepped, nothing
  flushed) with one UPDATE statement per set of changed columns, executed for all rows at
  once (on PostgreSQL one statement on the server too, the values as arrays), and marks
  them as written; :func:`write_changed_clocks` does the same for the SLA clocks those
  rules re-planned (PostgreSQL).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Table, TextClause, bindparam, inspect, text, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from opsflow.audit import writer as audit
from opsflow.auth.permissions import Permission, require_reach
from opsflow.auth.principal import Principal
from opsflow.db import insert_rows
from opsflow.events import outbox
from opsflow.kit import unnest
from opsflow.models.enums import TaskType
from opsflow.models.sla import SlaClock
from opsflow.models.task import Task
from opsflow.models.user import User
from opsflow.sla import service as sla_service
from opsflow.tasks import repository
from opsflow.tasks.schemas import TaskCreate
from opsflow.tasks.values import (
    ExternalRef,
    change_payload,
    event_type_of,
    new_task_values,
    task_state,
)

_CLOCK_COLUMNS = tuple(attr.key for attr in inspect(SlaClock).column_attrs)
_MIRRORED = ("start_deadline", "resolve_deadline", "sla_breach_at")
# A new task's attributes that its values leave unset read as None, as on a new Task.
_UNSET = dict.fromkeys(attr.key for attr in inspect(Task).column_attrs)


@dataclass(frozen=True)
class NewTask:
    """A task created in a batch, not yet inserted: its id and values."""

    id: uuid.UUID
    values: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.values["status"])

    @property
    def external_id(self) -> str | None:
        return cast(str | None, self.values["external_id"])


@dataclass
class _Plan:
    """The clocks and mirrored deadlines shared by tasks of one policy and targets."""

    clocks: list[dict[str, Any]]
    mirrored: dict[str, Any]


@dataclass
class NewTasks:
    """New tasks of one unit of work, created at `now`, held as rows until `write`."""

    session: AsyncSession
    catalog: sla_service.PolicyCatalog
    now: datetime
    tasks: list[dict[str, Any]] = field(default_factory=list)
    clocks: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    _plans: dict[tuple[Any, ...], tuple[sla_service.ResolvedPolicy, _Plan | None]] = field(
        default_factory=dict
    )

    def add(
        self,
        actor: Principal,
        data: TaskCreate,
        external: ExternalRef | None,
        assignee: User | None,
        team_id: uuid.UUID | None,
        *,
        plain_metadata: bool = False,
    ) -> NewTask:
        """A new task by the task rules, for references the caller checked (`assignee` an
        active user, `team_id` an active team or None for the default). Raises the rules'
        errors before anything is queued. `plain_metadata`: as for `new_task_values`."""
        if data.additional_assignees:
            raise ValueError("batched creation takes no additional assignees")
        permission = (
            Permission.INCIDENT_DECLARE
            if data.task_type is TaskType.INCIDENT
            else Permission.TASK_CREATE
        )
        require_reach(actor, permission)
        if team_id is None:
            team_id = assignee.team_id if assignee else actor.team_id
        selector = (
            data.task_type.value,
            data.priority.value,
            data.customer_tier.value,
            data.start_sla_minutes,
            data.resolve_sla_minutes,
        )
        known = self._plans.get(selector)
        policy = known[0] if known else self.catalog.resolve(*selector[:3])
        values = new_task_values(
            actor,
            data,
            external,
            policy,
            assignee,
            team_id,
            self.now,
            plain_metadata=plain_metadata,
        )
        plan = known[1] if known else None
        if plan is None:
            plan = self._plan(values, policy)
            self._plans[selector] = (policy, plan)
        values.update(plan.mirrored)
        task_id = values["id"]
        for clock in plan.clocks:
            self.clocks.append({**clock, "id": uuid.uuid4(), "task_id": task_id})
        self.tasks.append(values)
        repository.remember_no_assignees(self.session, task_id)
        view = cast(Task, SimpleNamespace(**{**_UNSET, **values}))
        audit.record(
            self.session,
            actor,
            entity_type="task",
            entity_id=task_id,
            action="TASK_CREATED",
            now=self.now,
            # Its metadata is `new_task_values`' own copy, not changed after this.
            new_state=task_state(view, plain_metadata=True),
            plain=True,
        )
        self.events.append(
            outbox.event_row(
                aggregate_type="task",
                aggregate_id=task_id,
                event_type=event_type_of("TASK_CREATED"),
                payload=change_payload(actor, view),
                now=self.now,
                request_id=actor.meta.request_id,
            )
        )
        return NewTask(task_id, values)

    def _plan(self, values: dict[str, Any], policy: sla_service.ResolvedPolicy) -> _Plan:
        """The clocks of a task with these values, as the SLA service plans them (a probe
        task outside the session takes the deadlines)."""
        probe = Task(**values)
        planned = sla_service.new_clocks(probe, self.now, policy)
        clocks = [
            {name: getattr(clock, name) for name in _CLOCK_COLUMNS if name not in ("id", "task_id")}
            for clock in planned
        ]
        return _Plan(clocks, {name: getattr(probe, name) for name in _MIRRORED})

    def __len__(self) -> int:
        return len(self.tasks)

    async def write(self) -> None:
        """Insert what was added so far: the tasks, then their clocks, then the events."""
        if not self.tasks:
            return
        await self.session.flush()  # whatever the unit of work holds goes first
        await insert_rows(self.session, Task, self.tasks)
        await insert_rows(self.session, SlaClock, self.clocks)
        await outbox.insert_events(self.session, self.events)
        self.tasks, self.clocks, self.events = [], [], []


_TASKS = cast(Table, Task.__table__)


async def write_changed(session: AsyncSession, tasks: Iterable[Task]) -> None:
    """Write tasks changed by deferred task commands: one UPDATE per set of changed columns
    (executed for all its rows at once), guarded by the version each was read at, then
    mark them written (the unit of work's flush has nothing left to do for them)."""
    groups: dict[tuple[str, ...], list[tuple[Task, dict[str, Any]]]] = {}
    for task in {id(t): t for t in tasks}.values():
        committed = inspect(task).committed_state
        changed = tuple(sorted(k for k in committed if k != "version"))
        if not changed:
            continue
        if "version" not in committed:  # changed outside a task command: step it here
            task.version = task.version + 1
        params = {f"v_{key}": getattr(task, key) for key in changed}
        params["b_id"] = task.id
        params["b_read_version"] = committed["version"]
        params["b_version"] = task.version
        groups.setdefault(changed, []).append((task, params))
    mapper = inspect(Task)
    dialect = session.get_bind().dialect
    for changed, rows in groups.items():
        if dialect.name == "postgresql":
            statement_of, arrays_of = _pg_update(changed, dialect)
            await session.execute(statement_of, arrays_of([params for _, params in rows]))
            _written(rows, (*changed, "version"))
            continue
        columns: dict[str, Any] = {
            mapper.columns[key].name: bindparam(f"v_{key}") for key in changed
        }
        statement = (
            update(_TASKS)
            .where(
                _TASKS.c.id == bindparam("b_id"),
                _TASKS.c.version == bindparam("b_read_version"),
            )
            .values({**columns, "version": bindparam("b_version")})
        )
        await session.execute(statement, [params for _, params in rows])
        _written(rows, (*changed, "version"))


def _written(rows: list[tuple[Any, dict[str, Any]]], changed: tuple[str, ...]) -> None:
    for row, _ in rows:
        for key in changed:
            set_committed_value(row, key, getattr(row, key))


_Arrays = Callable[[list[dict[str, Any]]], dict[str, list[Any]]]
_PG_UPDATES: dict[tuple[str, ...], tuple[TextClause, _Arrays]] = {}
_PG_CLOCK_UPDATES: dict[tuple[str, ...], tuple[TextClause, _Arrays]] = {}
_CLOCK_KEYS = frozenset(_CLOCK_COLUMNS)


async def write_changed_clocks(session: AsyncSession) -> None:
    """PostgreSQL: write the SLA clocks of the session changed in memory (the task rules
    re-planned them) with one UPDATE per set of changed columns for all of them, and mark
    them written, before the unit of work's flush. The flush would run its UPDATE once per
    clock on the server (an executemany), and with it, once per clock, the statement
    triggers of sla_clocks (the clock rollups). A clock with a change the flush must make
    itself (not a plain column) is left to it."""
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        return
    groups: dict[tuple[str, ...], list[tuple[Any, dict[str, Any]]]] = {}
    for clock in session.dirty:
        if type(clock) is not SlaClock:
            continue
        state = inspect(clock)
        keys = state.committed_state.keys()
        if not keys <= _CLOCK_KEYS:
            continue
        changed = tuple(sorted(k for k in keys if state.attrs[k].history.has_changes()))
        if not changed:
            continue
        params = {f"v_{key}": getattr(clock, key) for key in changed}
        params["b_id"] = clock.id
        groups.setdefault(changed, []).append((clock, params))
    for changed, rows in groups.items():
        statement, arrays_of = _pg_update_of(
            SlaClock, changed, dialect, _PG_CLOCK_UPDATES, versioned=False
        )
        await session.execute(statement, arrays_of([params for _, params in rows]))
        _written(rows, changed)


def _pg_update(changed: tuple[str, ...], dialect: Dialect) -> tuple[TextClause, _Arrays]:
    """PostgreSQL: the UPDATE of one set of changed columns of tasks (by id, guarded by the
    version each was read at, the version set) as ONE statement for all the rows, each
    column's values an array (`unnest`), and what makes the arrays of the rows' parameters.
    An executemany would run the statement once per row on the server, and with it, once
    per row, the statement-level triggers of `tasks` (the report rollups, the values copied
    to the clocks: migrations 0021-0024). Each column's values travel as
    `kit.unnest.array_of` says. Built once per set of columns."""
    return _pg_update_of(Task, changed, dialect, _PG_UPDATES, versioned=True)


def _pg_update_of(
    model: type[Any],
    changed: tuple[str, ...],
    dialect: Dialect,
    built: dict[tuple[str, ...], tuple[TextClause, _Arrays]],
    *,
    versioned: bool,
) -> tuple[TextClause, _Arrays]:
    """The one-statement UPDATE of `model`'s table by id (`versioned`: guarded by the
    version each row was read at, the version set), cached in `built`."""
    known = built.get(changed)
    if known is not None:
        return known
    mapper = inspect(model)
    table = cast(Table, model.__table__)
    names = ["b_id", "b_read_version", "b_version"] if versioned else ["b_id"]
    types = ["UUID", "INTEGER", "INTEGER"] if versioned else ["UUID"]
    processors: list[Callable[[Any], Any] | None] = [None] * len(names)
    sets = ["version = v.b_version"] if versioned else []
    for key in changed:
        column = mapper.columns[key]
        element, json_type, process = unnest.array_of(column, dialect)
        processors.append(process)
        names.append(f"v_{key}")
        types.append(element)
        value = f"CAST(v.v_{key} AS {json_type})" if json_type else f"v.v_{key}"
        sets.append(f'"{column.name}" = {value}')
    arrays = ", ".join(f"CAST(:{n} AS {t}[])" for n, t in zip(names, types, strict=True))
    guard = f" AND {table.name}.version = v.b_read_version" if versioned else ""
    statement = text(
        f"UPDATE {table.name} SET {', '.join(sets)} "  # noqa: S608
        f"FROM unnest({arrays}) AS v({', '.join(names)}) "
        f"WHERE {table.name}.id = v.b_id{guard}"
    )
    steps = list(zip(names, processors, strict=True))

    def arrays_of(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
        return {
            name: [row[name] for row in rows]
            if process is None
            else [process(row[name]) for row in rows]
            for name, process in steps
        }

    built[changed] = (statement, arrays_of)
    return statement, arrays_of
