from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel

from opsflow.auth.deps import require
from opsflow.auth.permissions import Permission
from opsflow.auth.principal import Principal
from opsflow.deps import ClockDep, SnapshotDep
from opsflow.errors import ValidationFailed, declares
from opsflow.kit.validation import Instant, TimeZoneName
from opsflow.models.enums import CustomerTier, Priority, TaskType
from opsflow.reports import csv_format, service
from opsflow.reports.periods import GroupBy
from opsflow.reports.repository import ReportFilters
from opsflow.reports.schemas import (
    Dashboard,
    IncidentsReport,
    SlaCompliance,
    SlaSummary,
    TeamPerformanceReport,
)

router = APIRouter(prefix="/reports", tags=["reports"])

Reader = Annotated[Principal, Depends(require(Permission.REPORTS_READ))]

# The default period: the last 30 days up to now. The longest: about three years.
DEFAULT_DAYS = 30
MAX_DAYS = 1100
Format = Literal["json", "csv"]


@declares(ValidationFailed)
async def _filters(
    clock: ClockDep,
    start_date: Instant | None = None,
    end_date: Instant | None = None,
    task_type: TaskType | None = None,
    priority: Priority | None = None,
    team_id: uuid.UUID | None = None,
    customer_tier: CustomerTier | None = None,
    tz: Annotated[TimeZoneName, Query()] = "UTC",
) -> ReportFilters:
    end = end_date or (clock.now() if start_date is None else start_date + timedelta(DEFAULT_DAYS))
    start = start_date or end - timedelta(days=DEFAULT_DAYS)
    problems = []
    if end <= start:
        problems.append({"field": "end_date", "message": "must be after start_date"})
    elif end - start > timedelta(days=MAX_DAYS):
        problems.append({"field": "end_date", "message": f"the period is at most {MAX_DAYS} days"})
    if problems:
        raise ValidationFailed("Invalid report filters", details=problems)
    return ReportFilters(
        start=start,
        end=end,
        task_type=task_type,
        priority=priority,
        team_id=team_id,
        customer_tier=customer_tier,
        tz=tz,
    )


Filters = Annotated[ReportFilters, Depends(_filters)]


def _answer(report: BaseModel, fmt: Format, name: str, clock: ClockDep) -> Any:
    if fmt == "json":
        return report
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    return Response(
        csv_format.render(report.model_dump(mode="json")),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"'},
    )


_CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}}
}


@router.get("/sla-summary", response_model=SlaSummary, responses=_CSV)
async def sla_summary(
    session: SnapshotDep,
    clock: ClockDep,
    _: Reader,
    filters: Filters,
    group_by: GroupBy = "day",
    format: Format = "json",
) -> Any:
    report = await service.sla_summary(session, filters, group_by, clock.now())
    return _answer(report, format, "sla-summary", clock)


@router.get("/team-performance", response_model=TeamPerformanceReport, responses=_CSV)
async def team_performance(
    session: SnapshotDep, clock: ClockDep, _: Reader, filters: Filters, format: Format = "json"
) -> Any:
    report = await service.team_performance(session, filters, clock.now())
    return _answer(report, format, "team-performance", clock)


@router.get("/incidents", response_model=IncidentsReport, responses=_CSV)
async def incidents(
    session: SnapshotDep, clock: ClockDep, _: Reader, filters: Filters, format: Format = "json"
) -> Any:
    report = await service.incidents(session, filters, clock.now())
    return _answer(report, format, "incidents", clock)


@router.get("/dashboard", response_model=Dashboard, responses=_CSV)
async def dashboard(
    session: SnapshotDep, clock: ClockDep, _: Reader, filters: Filters, format: Format = "json"
) -> Any:
    report = await service.dashboard(session, filters, clock.now())
    return _answer(report, format, "dashboard", clock)


@router.get("/sla-compliance", response_model=SlaCompliance, responses=_CSV)
async def sla_compliance(
    session: SnapshotDep, clock: ClockDep, _: Reader, filters: Filters, format: Format = "json"
) -> Any:
    report = await service.sla_compliance(session, filters, clock.now())
    return _answer(report, format, "sla-compliance", clock)
