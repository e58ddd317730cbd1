"""Simulating SLA clocks: when each threshold and escalation level of a task would be due.

Nothing is written. The request names a policy, or the task attributes that pick one (as a
new task would), and may override targets, thresholds, calendar and start; pauses are
subtracted like a clock's closed pauses.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.errors import NotFound, ValidationFailed
from opsflow.escalation import service as escalation
from opsflow.escalation.firing import DEFAULT_POLICY_NAME
from opsflow.escalation.service import PlannedStep
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.task import Task
from opsflow.models.team import Team
from opsflow.sla import service as sla_service
from opsflow.sla.calendar import ALWAYS_NAME, add_working_time
from opsflow.sla.clocks import plan_clock
from opsflow.sla.policies import WILDCARD, PolicySpec
from opsflow.sla_config.schemas import (
    SimulatedClock,
    SimulatedInstant,
    SimulatedStep,
    SimulateRequest,
    SimulateResult,
)
from opsflow.sla_config.service import load
from opsflow.teams import repository as teams_repository


async def simulate(session: AsyncSession, data: SimulateRequest, now: datetime) -> SimulateResult:
    stored = await load(session)
    config = stored.config
    spec: PolicySpec | None = None
    if data.policy is not None:
        spec = config.policy(data.policy)
        if spec is None:
            raise NotFound("sla_policy", data.policy)
        name: str | None = spec.name
        start_minutes, resolve_minutes = spec.start_minutes, spec.resolve_minutes
        thresholds, calendar_name, escalation = spec.thresholds, spec.calendar, spec.escalation
    else:
        resolved = (await sla_service.load_catalog(session)).resolve(
            data.task_type, data.priority, data.customer_tier
        )
        name = resolved.policy_name
        start_minutes, resolve_minutes = resolved.start_minutes, resolved.resolve_minutes
        thresholds, calendar_name = resolved.thresholds, resolved.calendar_name
        matched = config.policy(name) if name else None
        escalation = matched.escalation if matched else ()
    source = "policy" if name else "default"
    if data.start_minutes is not None:
        start_minutes, source = data.start_minutes, "request"
    if data.resolve_minutes is not None:
        resolve_minutes, source = data.resolve_minutes, "request"
    if start_minutes > resolve_minutes:
        raise ValidationFailed(
            details=[{"field": "start_minutes", "message": "must not exceed resolve_minutes"}]
        )
    if data.thresholds is not None:
        thresholds = tuple(data.thresholds)
        if thresholds[0] >= thresholds[1]:
            raise ValidationFailed(
                details=[{"field": "thresholds", "message": "warning must be below critical"}]
            )
    if data.calendar is not None:
        calendar_name = None if data.calendar == ALWAYS_NAME else data.calendar
    calendar = config.calendar(calendar_name)
    if calendar is None:
        raise ValidationFailed(
            details=[{"field": "calendar", "message": f"unknown calendar '{calendar_name}'"}]
        )
    start = data.start or now
    pauses = [{"from": p.start, "to": p.end} for p in data.pauses if p.end > p.start]
    zone = ZoneInfo(calendar.timezone)

    def instant(
        label: str, percent: float | None, at: datetime, minutes: float
    ) -> SimulatedInstant:
        local = at.astimezone(zone)
        return SimulatedInstant(
            name=label,
            percent=percent,
            at=at,
            working_minutes=round(minutes, 4),
            local_time=f"{local:%a %Y-%m-%d %H:%M:%S} {calendar.timezone}",
        )

    clocks = []
    for kind, target in (("START", start_minutes), ("RESOLVE", resolve_minutes)):
        plan = plan_clock(start, target, list(thresholds), to_jsonable(pauses), calendar)
        clocks.append(
            SimulatedClock(
                kind=kind,
                target_minutes=target,
                deadline=plan.deadline,
                thresholds=[
                    instant(f"{kind}_{t.name}", t.percent, at, target * t.percent / 100)
                    for t, at in plan.steps
                ],
            )
        )
    labels = dict(config.escalation_levels)
    closed = [(p["from"], p["to"]) for p in pauses]
    steps = []
    for level, minutes in escalation:
        try:
            at = add_working_time(calendar, start, minutes * 60, closed)
        except ValueError:
            continue
        label = f"LEVEL_{level}" + (f" ({labels[level]})" if level in labels else "")
        steps.append(instant(label, None, at, minutes))
    triggers: dict[str, list[tuple[str | None, datetime]]] = {"created": [(None, start)]}
    for clock in clocks:
        for threshold in clock.thresholds:
            kind = threshold.name.rsplit("_", 1)[1].lower()  # warning | critical | breach
            triggers.setdefault(kind, []).append((clock.kind, threshold.at))
    attributes: dict[str, str] = {
        "task_type": data.task_type,
        "priority": data.priority,
        "customer_tier": data.customer_tier,
    }
    if data.policy is not None and spec is not None:
        # A named policy's own selectors stand for the task, unless the request gives them.
        for key, value in zip(attributes, spec.selector, strict=True):
            if key not in data.model_fields_set and value != WILDCARD:
                attributes[key] = value
    steps_of_policies = await _escalation_steps(session, data, attributes, triggers, zone)
    return SimulateResult(
        policy=name,
        source=source,
        calendar=calendar.name,
        timezone=calendar.timezone,
        start=start,
        clocks=clocks,
        escalation=steps,
        escalation_steps=steps_of_policies,
    )


async def _escalation_steps(
    session: AsyncSession,
    data: SimulateRequest,
    attributes: dict[str, str],
    triggers: dict[str, list[tuple[str | None, datetime]]],
    zone: ZoneInfo,
) -> list[SimulatedStep]:
    """The steps of the escalation policies that would handle a task with these attributes
    (its team's default policy when none matches; the built-in START-breach step when no
    policy at all handles breaches), each at its instant: a `created` run from the start,
    `warning` and `breach` runs from each clock's warning and breach instants."""
    team = await _team(session, data.team)
    task = Task(
        task_type=attributes["task_type"],
        priority=attributes["priority"],
        customer_tier=attributes["customer_tier"],
        service=data.service,
        team_id=team.id if team else None,
        tags=list(data.tags),
    )
    result: list[SimulatedStep] = []

    def add(name: str, trigger: str, sla_type: str | None, planned: list[PlannedStep]) -> None:
        for item in planned:
            local = item.fire_at.astimezone(zone)
            result.append(
                SimulatedStep(
                    policy=name,
                    trigger=trigger,
                    sla_type=sla_type,
                    level=item.level,
                    cycle=item.cycle,
                    at=item.fire_at,
                    local_time=f"{local:%a %Y-%m-%d %H:%M:%S} {zone.key}",
                    targets=list(item.step.get("targets", [])),
                    channels=list(item.step.get("channels", ["email"])),
                )
            )

    for trigger in ("created", "warning", "breach"):
        policies = await escalation.policies_for(session, task, trigger)
        for sla_type, instant in triggers.get(trigger, []):
            for policy in policies:
                planned = escalation.plan(
                    list(policy.steps), policy.repeat, policy.repeat_interval_minutes, instant
                )
                add(policy.name, trigger, sla_type, planned)
            if not policies and trigger == "breach" and sla_type == "START":
                add(
                    DEFAULT_POLICY_NAME,
                    trigger,
                    sla_type,
                    escalation.plan(escalation.DEFAULT_STEPS, 0, None, instant),
                )
    return sorted(result, key=lambda s: (s.at, s.policy, s.cycle, s.level))


async def _team(session: AsyncSession, ref: str | None) -> Team | None:
    if ref is None:
        return None
    team = None
    try:
        team = await teams_repository.get(session, uuid.UUID(ref))
    except ValueError:
        team = await teams_repository.by_name(session, ref)
    if team is None:
        raise ValidationFailed(details=[{"field": "team", "message": f"no team {ref!r}"}])
    return team
