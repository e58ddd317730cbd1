"""The reports as the API answers them (docs/reports.md defines every number)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel


class Period(BaseModel):
    start: datetime
    end: datetime
    tz: str


class OverallMetrics(BaseModel):
    total_tasks: int
    completed_tasks: int
    in_progress_tasks: int
    cancelled_tasks: int
    completion_rate: float
    avg_completion_time_hours: float | None
    sla_breach_rate: float
    total_breaches: int


class GroupMetrics(BaseModel):
    total: int
    completed: int
    breaches: int
    breach_rate: float
    avg_completion_time_hours: float | None


class PriorityMetrics(GroupMetrics):
    priority: str


class TypeMetrics(GroupMetrics):
    task_type: str


class TimePoint(BaseModel):
    date: date
    total: int
    completed: int
    breaches: int


class SlaSummary(BaseModel):
    period: Period
    group_by: Literal["day", "week", "month"]
    overall_metrics: OverallMetrics
    by_priority: list[PriorityMetrics]
    by_type: list[TypeMetrics]
    time_series: list[TimePoint]


class UserRef(BaseModel):
    id: uuid.UUID
    username: str
    full_name: str | None


class TeamRef(BaseModel):
    id: uuid.UUID
    name: str


class PerformanceMetrics(BaseModel):
    assigned_tasks: int
    completed_tasks: int
    in_progress_tasks: int
    avg_completion_time_hours: float | None
    sla_breaches: int
    breach_rate: float
    workload_score: int


class UserPerformance(PerformanceMetrics):
    user: UserRef


class TeamPerformance(PerformanceMetrics):
    team: TeamRef


class TeamPerformanceReport(BaseModel):
    period: Period
    team_metrics: list[UserPerformance]
    by_team: list[TeamPerformance]


class SeverityCounts(BaseModel):
    CRITICAL: int
    HIGH: int
    MEDIUM: int
    LOW: int


class Category(BaseModel):
    category: str
    count: int
    avg_resolution_hours: float | None


class IncidentMetrics(BaseModel):
    total_incidents: int
    open_incidents: int
    mttr_hours: float | None
    previous_mttr_hours: float | None
    mttr_trend: Literal["improving", "worsening", "stable"]
    by_severity: SeverityCounts
    top_categories: list[Category]


class IncidentsReport(BaseModel):
    period: Period
    incident_metrics: IncidentMetrics


class RealtimeStats(BaseModel):
    active_incidents: int
    critical_incidents: int
    tasks_at_risk: int
    pending_escalations: int
    team_utilization: float


class RecentBreach(BaseModel):
    task_id: uuid.UUID
    title: str
    breach_type: str
    delay_minutes: int
    triggered_at: datetime


class UpcomingDeadline(BaseModel):
    task_id: uuid.UUID
    title: str
    sla_type: str
    deadline: datetime
    time_remaining: int
    at_risk: bool


class Dashboard(BaseModel):
    period: Period
    generated_at: datetime
    realtime_stats: RealtimeStats
    recent_breaches: list[RecentBreach]
    upcoming_deadlines: list[UpcomingDeadline]


class CalendarCompliance(BaseModel):
    calendar: str
    sla_type: str
    met: int
    breached: int
    counting: int
    cancelled: int
    compliance_rate: float | None


class Percentiles(BaseModel):
    p50: float | None
    p90: float | None
    p95: float | None


class Durations(BaseModel):
    count: int
    mean_wall_minutes: float | None
    wall_minutes: Percentiles
    working_minutes: Percentiles


class TierBreaches(BaseModel):
    customer_tier: str
    total: int
    breaches: int
    breach_rate: float


class Interruptions(BaseModel):
    user: UserRef
    timezone: str
    total: int
    business_hours: int
    off_hours: int
    sleep_hours: int


class SlaCompliance(BaseModel):
    period: Period
    compliance: list[CalendarCompliance]
    time_to_acknowledge: Durations
    time_to_resolve: Durations
    mtta_minutes: float | None
    breaches_by_tier: list[TierBreaches]
    interruptions: list[Interruptions]
