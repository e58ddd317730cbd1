"""Simulating SLA clocks: when each threshold and escalation level of a task would be due.

Nothing is written. The request names a policy, or the task attributes that pick one (as a
new task would), and may override targets, thresholds, calendar and start; pauses are
subtracted like a clock's closed pauses.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.errors import NotFound, ValidationFailed
from opsflow.kit.jsonable import to_jsonable
from opsflow.sla import service as sla_service
from opsflow.sla.calendar import ALWAYS_NAME, add_working_time
from opsflow.sla.clocks import plan_clock
from opsflow.sla_config.schemas import (
    SimulatedClock,
    SimulatedInstant,
    SimulateRequest,
    SimulateResult,
)
from opsflow.sla_config.service import load


async def simulate(session: AsyncSession, data: SimulateRequest, now: datetime) -> SimulateResult:
    stored = await load(session)
    config = stored.config
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
    return SimulateResult(
        policy=name,
        source=source,
        calendar=calendar.name,
        timezone=calendar.timezone,
        start=start,
        clocks=clocks,
        escalation=steps,
    )
