"""The reports: grouped aggregates from the repository shaped into the documented numbers.

docs/reports.md defines every number. Rates are percentages rounded to two decimals,
durations are rounded to two decimals of their unit; a mean or percentile of nothing is
null.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.models.enums import Priority, SlaKind
from opsflow.reports import clocks as clock_queries
from opsflow.reports import periods, repository, rollups
from opsflow.reports.periods import GroupBy
from opsflow.reports.repository import ReportFilters
from opsflow.reports.schemas import (
    CalendarCompliance,
    Category,
    Dashboard,
    Durations,
    GroupMetrics,
    IncidentMetrics,
    IncidentsReport,
    Interruptions,
    OverallMetrics,
    Percentiles,
    PerformanceMetrics,
    Period,
    PriorityMetrics,
    RealtimeStats,
    RecentBreach,
    SeverityCounts,
    SlaCompliance,
    SlaSummary,
    TeamPerformance,
    TeamPerformanceReport,
    TeamRef,
    TierBreaches,
    TimePoint,
    TypeMetrics,
    UpcomingDeadline,
    UserPerformance,
    UserRef,
)
from opsflow.sla.clocks import counted_seconds

# The MTTR of a period is "stable" against the previous period of the same length while
# it stays within this fraction of it.
TREND_TOLERANCE = 0.10
Trend = Literal["improving", "worsening", "stable"]
TOP_CATEGORIES = 10
DASHBOARD_ROWS = 10


def _rate(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def _hours(seconds: float | None, count: int) -> float | None:
    return round(seconds / count / 3600.0, 2) if count and seconds is not None else None


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60.0, 2)


Counts = tuple[int, int, int, int, float, int, int]


def counts_of(row: Any) -> Counts:
    """A tally row's numbers as plain Python values, converted once (a row feeds several
    tallies)."""
    return (
        int(row.total),
        int(row.completed),
        int(row.open),
        int(row.cancelled),
        float(row.completion_seconds or 0.0),
        int(row.breached),
        int(row.workload),
    )


@dataclass
class Tally:
    total: int = 0
    completed: int = 0
    open: int = 0
    cancelled: int = 0
    completion_seconds: float = 0.0
    breached: int = 0
    workload: int = 0

    def add(self, row: Any) -> None:
        self.add_counts(counts_of(row))

    def add_counts(self, counts: Counts) -> None:
        total, completed, open_, cancelled, seconds, breached, workload = counts
        self.total += total
        self.completed += completed
        self.open += open_
        self.cancelled += cancelled
        self.completion_seconds += seconds
        self.breached += breached
        self.workload += workload

    @property
    def avg_hours(self) -> float | None:
        return _hours(self.completion_seconds, self.completed)

    @property
    def breach_rate(self) -> float:
        return _rate(self.breached, self.total)

    def group(self) -> dict[str, Any]:
        return GroupMetrics(
            total=self.total,
            completed=self.completed,
            breaches=self.breached,
            breach_rate=self.breach_rate,
            avg_completion_time_hours=self.avg_hours,
        ).model_dump()

    def performance(self) -> dict[str, Any]:
        return PerformanceMetrics(
            assigned_tasks=self.total,
            completed_tasks=self.completed,
            in_progress_tasks=self.open,
            avg_completion_time_hours=self.avg_hours,
            sla_breaches=self.breached,
            breach_rate=self.breach_rate,
            workload_score=self.workload,
        ).model_dump()


def _period(filters: ReportFilters) -> Period:
    return Period(start=filters.start, end=filters.end, tz=filters.tz)


def _tally(rows: Iterable[Any]) -> Tally:
    tally = Tally()
    for row in rows:
        tally.add(row)
    return tally


# --- GET /reports/sla-summary -----------------------------------------------------------


async def sla_summary(
    session: AsyncSession, filters: ReportFilters, group_by: GroupBy, now: datetime
) -> SlaSummary:
    await repository.prepare(session)
    zone = ZoneInfo(filters.tz)
    step = periods.slot_step(zone, filters.start, filters.end)
    rows = await repository.task_tallies(session, filters, now, step)
    overall = Tally()
    by_priority: dict[str, Tally] = defaultdict(Tally)
    by_type: dict[str, Tally] = defaultdict(Tally)
    series: dict[Any, Tally] = {
        day: Tally() for day in periods.buckets(filters.start, filters.end, zone, group_by)
    }
    days: dict[int, Any] = {}  # slot -> bucket, computed once per slot
    for row in rows:
        counts = counts_of(row)
        overall.add_counts(counts)
        by_priority[row.priority].add_counts(counts)
        by_type[row.task_type].add_counts(counts)
        slot = int(row.slot)
        day = days.get(slot)
        if day is None:
            day = days[slot] = periods.bucket_of(periods.slot_start(slot, step), zone, group_by)
        series.setdefault(day, Tally()).add_counts(counts)
    ranks = {p.value: p.rank for p in Priority}
    ranked = sorted(by_priority, key=lambda p: (-ranks.get(p, 0), p))
    return SlaSummary(
        period=_period(filters),
        group_by=group_by,
        overall_metrics=OverallMetrics(
            total_tasks=overall.total,
            completed_tasks=overall.completed,
            in_progress_tasks=overall.open,
            cancelled_tasks=overall.cancelled,
            completion_rate=_rate(overall.completed, overall.total - overall.cancelled),
            avg_completion_time_hours=overall.avg_hours,
            sla_breach_rate=overall.breach_rate,
            total_breaches=overall.breached,
        ),
        by_priority=[PriorityMetrics(priority=p, **by_priority[p].group()) for p in ranked],
        by_type=[TypeMetrics(task_type=t, **by_type[t].group()) for t in sorted(by_type)],
        time_series=[
            TimePoint(date=day, total=t.total, completed=t.completed, breaches=t.breached)
            for day, t in sorted(series.items())
        ],
    )


# --- GET /reports/team-performance ------------------------------------------------------


def _user_ref(users: dict[uuid.UUID, Any], user_id: uuid.UUID) -> UserRef:
    user = users.get(user_id)
    if user is None:
        return UserRef(id=user_id, username="", full_name=None)
    return UserRef(id=user.id, username=user.username, full_name=user.full_name)


async def team_performance(
    session: AsyncSession, filters: ReportFilters, now: datetime
) -> TeamPerformanceReport:
    await repository.prepare(session)
    rows = await repository.people_tallies(session, filters, now)
    per_user: dict[uuid.UUID, Tally] = defaultdict(Tally)
    per_team: dict[uuid.UUID, Tally] = defaultdict(Tally)
    for row in rows:
        counts = counts_of(row)
        if row.assigned_to is not None:
            per_user[row.assigned_to].add_counts(counts)
        if row.team_id is not None:
            per_team[row.team_id].add_counts(counts)
    users = await repository.users_by_id(session, list(per_user))
    teams = await repository.teams_by_id(session, list(per_team))
    user_rows = [
        UserPerformance(user=_user_ref(users, uid), **tally.performance())
        for uid, tally in per_user.items()
    ]
    user_rows.sort(key=lambda r: (-r.workload_score, r.user.username, str(r.user.id)))
    team_rows = [
        TeamPerformance(
            team=TeamRef(id=tid, name=teams[tid].name if tid in teams else ""),
            **tally.performance(),
        )
        for tid, tally in per_team.items()
    ]
    team_rows.sort(key=lambda r: (-r.workload_score, r.team.name, str(r.team.id)))
    return TeamPerformanceReport(period=_period(filters), team_metrics=user_rows, by_team=team_rows)


# --- GET /reports/incidents -------------------------------------------------------------


def trend(current: float | None, previous: float | None) -> Trend:
    """improving: MTTR fell by more than the tolerance; worsening: rose by more; else
    (or without both numbers) stable."""
    if current is None or previous is None or previous == 0:
        return "stable"
    if current < previous * (1 - TREND_TOLERANCE):
        return "improving"
    if current > previous * (1 + TREND_TOLERANCE):
        return "worsening"
    return "stable"


async def incidents(
    session: AsyncSession, filters: ReportFilters, now: datetime
) -> IncidentsReport:
    await repository.prepare(session)
    rows = await repository.severity_tallies(session, filters, now)
    overall = _tally(rows)
    severity = {p.value: 0 for p in Priority}
    for row in rows:
        severity[row.priority] = severity.get(row.priority, 0) + int(row.total)
    length = filters.end - filters.start
    previous_filters = ReportFilters(
        **{**filters.__dict__, "start": filters.start - length, "end": filters.start}
    )
    previous = _tally(await repository.severity_tallies(session, previous_filters, now))
    tags = await repository.tag_tallies(session, filters)
    categories = sorted(
        (
            Category(
                category=str(row.tag),
                count=int(row.count),
                avg_resolution_hours=_hours(
                    float(row.seconds) if row.seconds is not None else None, int(row.completed)
                ),
            )
            for row in tags
        ),
        key=lambda c: (-c.count, c.category),
    )[:TOP_CATEGORIES]
    return IncidentsReport(
        period=_period(filters),
        incident_metrics=IncidentMetrics(
            total_incidents=overall.total,
            open_incidents=overall.open,
            mttr_hours=overall.avg_hours,
            previous_mttr_hours=previous.avg_hours,
            mttr_trend=trend(overall.avg_hours, previous.avg_hours),
            by_severity=SeverityCounts(**severity),
            top_categories=categories,
        ),
    )


# --- GET /reports/dashboard -------------------------------------------------------------


async def dashboard(session: AsyncSession, filters: ReportFilters, now: datetime) -> Dashboard:
    await repository.prepare(session)
    active, critical = await repository.open_incident_counts(session, filters)
    working, everyone = await repository.utilization(session, filters)
    breaches = await repository.recent_breaches(session, filters, DASHBOARD_ROWS)
    upcoming = await repository.upcoming_deadlines(session, filters, now, DASHBOARD_ROWS)
    return Dashboard(
        period=_period(filters),
        generated_at=now,
        realtime_stats=RealtimeStats(
            active_incidents=active,
            critical_incidents=critical,
            tasks_at_risk=await repository.tasks_at_risk(session, filters, now),
            pending_escalations=await repository.pending_escalations(session, filters),
            team_utilization=_rate(working, everyone),
        ),
        recent_breaches=[
            RecentBreach(
                task_id=row.task_id,
                title=row.title,
                breach_type=row.sla_type,
                delay_minutes=row.delay_minutes,
                triggered_at=row.triggered_at,
            )
            for row in breaches
        ],
        upcoming_deadlines=[
            UpcomingDeadline(
                task_id=row.task_id,
                title=row.title,
                sla_type=row.kind,
                deadline=row.deadline,
                time_remaining=int((row.deadline - now).total_seconds()),
                at_risk=row.warning_at is not None and row.warning_at <= now,
            )
            for row in upcoming
        ],
    )


# --- GET /reports/sla-compliance --------------------------------------------------------


def _percentiles(values: list[float | None]) -> Percentiles:
    p50, p90, p95 = (_minutes(v) for v in values)
    return Percentiles(p50=p50, p90=p90, p95=p95)


def _durations(values: clock_queries.Durations | None) -> Durations:
    count, mean, wall, working = values or (0, None, [None] * 3, [None] * 3)
    return Durations(
        count=count,
        mean_wall_minutes=_minutes(mean),
        wall_minutes=_percentiles(wall),
        working_minutes=_percentiles(working),
    )


async def sla_compliance(
    session: AsyncSession, filters: ReportFilters, now: datetime
) -> SlaCompliance:
    await repository.prepare(session)
    compliance = [
        CalendarCompliance(
            calendar=row.calendar,
            sla_type=row.kind,
            met=int(row.met),
            breached=int(row.breached),
            counting=int(row.counting),
            cancelled=int(row.cancelled),
            compliance_rate=(
                _rate(int(row.met), int(row.met) + int(row.breached))
                if int(row.met) + int(row.breached)
                else None
            ),
        )
        for row in await clock_queries.calendar_compliance(session, filters, now)
    ]
    compliance.sort(key=lambda c: (c.calendar, c.sla_type != SlaKind.START))
    stopped = await clock_queries.durations(session, filters)
    acknowledge = _durations(stopped.get(SlaKind.START))
    resolve = _durations(stopped.get(SlaKind.RESOLVE))
    tiers = [
        TierBreaches(
            customer_tier=row.customer_tier,
            total=int(row.total),
            breaches=int(row.breached),
            breach_rate=_rate(int(row.breached), int(row.total)),
        )
        for row in await repository.tier_tallies(session, filters, now)
    ]
    tiers.sort(key=lambda t: t.customer_tier)
    return SlaCompliance(
        period=_period(filters),
        compliance=compliance,
        time_to_acknowledge=acknowledge,
        time_to_resolve=resolve,
        mtta_minutes=acknowledge.mean_wall_minutes,
        breaches_by_tier=tiers,
        interruptions=await _interruptions(session, filters),
    )


async def _interruptions(session: AsyncSession, filters: ReportFilters) -> list[Interruptions]:
    step = periods.QUARTER_HOUR
    rows = await repository.acknowledgements(session, filters, step)
    counts: dict[uuid.UUID, dict[str, int]] = defaultdict(
        lambda: {"business_hours": 0, "off_hours": 0, "sleep_hours": 0}
    )
    ids = sorted({row[0] for row in rows}, key=str)
    zones = await repository.user_zones(session, ids)
    user_zone = {uid: periods.zone_or_utc(zones.get(uid)) for uid in ids}
    classes: dict[tuple[str, int], str] = {}  # (zone, slot) -> hour class, once each
    for user_id, slot, count in rows:
        zone = user_zone[user_id]
        kind = classes.get((zone.key, slot))
        if kind is None:
            kind = classes[(zone.key, slot)] = periods.hour_class(
                periods.slot_start(int(slot), step), zone
            )
        counts[user_id][kind] += int(count)
    users = await repository.users_by_id(session, ids)
    result = [
        Interruptions(
            user=_user_ref(users, uid),
            timezone=user_zone[uid].key,
            total=sum(counts[uid].values()),
            **counts[uid],
        )
        for uid in ids
    ]
    result.sort(key=lambda r: (-r.total, r.user.username, str(r.user.id)))
    return result


# --- rebuild ----------------------------------------------------------------------------


async def rebuild(session: AsyncSession, *, batch: int = 5000) -> int:
    """Recompute what reports keep beside the rows they describe: every task's
    `sla_breach_at` from its clocks, the working time of every stopped SLA clock (none
    on a counting one), exactly as a clock change stores them, and (PostgreSQL) the
    rollups of the tasks and of the clocks as the triggers keep them. For data loaded in
    bulk, or to check the stored values. Returns how many tasks and clocks changed. The
    caller commits."""
    changed = await clock_queries.clear_counting_clocks(session)
    changed += await clock_queries.rebuild_breach_at(session)
    plain = await clock_queries.rebuild_plain_clocks(session)
    changed += plain or 0
    after: uuid.UUID | None = None
    while True:
        clocks = await clock_queries.stopped_clock_ids(
            session, after, batch, plain_done=plain is not None
        )
        if not clocks:
            break
        for clock in clocks:
            value = counted_seconds(clock)
            if clock.working_seconds != value:
                clock.working_seconds = value
                changed += 1
        after = clocks[-1].id
        await session.flush()
        session.expunge_all()
    if session.get_bind().dialect.name == "postgresql":
        # Last: the breach instants updated above moved their tasks' rollup counts too.
        changed += await rollups.rebuild(session)
    return changed
