"""Dashboard figures: DORA metrics, deployment outcomes, approval waits, incidents and
health, each aggregated by the database (one query per figure, whatever the row count).

Medians and p90s use the nearest-rank method with window functions (ROW_NUMBER and COUNT
over each period), which PostgreSQL and SQLite both run, so `make run` shows the same
figures as production. Every function returns `{"rows": [...], "summary": {...}}` with
plain numbers, which the page draws and the API returns as JSON or CSV."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import (
    Avg,
    BooleanField,
    Count,
    DateField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    Max,
    OuterRef,
    Q,
    Sum,
    Value,
    Window,
)
from django.db.models.functions import Ceil, RowNumber, TruncMonth, TruncWeek
from django.utils import timezone

from deployments.choices import WAS_LIVE_STATES, DeploymentState, Environment
from deployments.models import Deployment
from monitoring.choices import Resolution, Severity
from monitoring.models import MTTA, MTTR, Incident, ProbeRollup

TRUNCATE = {"week": TruncWeek, "month": TruncMonth}
DEFAULT_PERIODS = 12  # weeks or months shown when no `since` is given

DEFINITIONS = {
    "deployment_frequency": "Deployments to production that went live, per period "
    "(rollbacks are not counted as changes).",
    "lead_time": "From registering a version to its first time live in production: median "
    "and 90th percentile, in hours.",
    "change_failure_rate": "Share of production deployments followed by a rollback (one "
    "that was not rejected or cancelled) or by an incident linked to them.",
    "time_to_restore": "From an incident being opened to it being resolved, for incidents "
    "on production targets or on no target: median, in hours, by the period it was opened "
    "in (open incidents count once resolved).",
}
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LONGEST_RANGE = timedelta(days=5 * 366)


@dataclass(frozen=True)
class Scope:
    """Which slice of the portal a figure covers: all, one team or one model."""

    period: str = "week"
    since: datetime | None = None
    until: datetime | None = None
    team: str = ""
    model: str = ""

    def __post_init__(self):
        if self.period not in TRUNCATE:
            raise ValueError(f"period must be one of {', '.join(TRUNCATE)}")

    @property
    def start(self) -> datetime:
        if self.since:
            return self.since
        first = period_start(timezone.localdate(), self.period)
        for _ in range(DEFAULT_PERIODS - 1):
            first = period_start(first - timedelta(days=1), self.period)
        return midnight(first)

    @property
    def end(self) -> datetime:
        return self.until or timezone.now()

    def problems(self) -> dict[str, list[str]]:
        """What is wrong with the range, by parameter (empty when it can be computed)."""
        if self.since and self.since < EARLIEST:
            return {"since": ["Use a date from 2000 on."]}
        if self.until and self.until > timezone.now() + timedelta(days=366):
            return {"until": ["Use a date at most a year ahead."]}
        if self.end <= self.start:
            return {"until": ["Must be after since."]}
        if self.end - self.start > LONGEST_RANGE:
            return {"since": ["Ask for at most five years at a time."]}
        return {}

    def select(self, queryset, date_field: str):
        """The rows of `queryset` (deployments or incidents, which lead to a model through
        their version) of the team or model, whose `date_field` falls in the range."""
        query = Q(**{f"{date_field}__gte": self.start, f"{date_field}__lt": self.end})
        if self.team:
            query &= Q(version__model__team__iexact=self.team)
        if self.model:
            query &= Q(version__model__name=self.model)
        return queryset.filter(query)

    def buckets(self) -> list[date]:
        """Every period starting in [start, end), so periods without rows show as zero."""
        current = period_start(timezone.localtime(self.start).date(), self.period)
        starts = []
        while midnight(current) < self.end:
            starts.append(current)
            step = timedelta(days=32 if self.period == "month" else 7)
            current = period_start(current + step, self.period)
        return starts


def period_start(day: date, period: str) -> date:
    if period == "month":
        return day.replace(day=1)
    return day - timedelta(days=day.weekday())


def midnight(day: date) -> datetime:
    """The start of `day` in the current time zone."""
    return timezone.make_aware(datetime.combine(day, time.min))


def _bucket(field: str, scope: Scope):
    return TRUNCATE[scope.period](field, output_field=DateField())


def per_period(queryset, date_field: str, scope: Scope, **aggregates) -> dict[date, dict]:
    """`aggregates` for each period start, in one GROUP BY query."""
    rows = (
        queryset.annotate(bucket=_bucket(date_field, scope)).values("bucket").annotate(**aggregates)
    )
    return {_as_date(row["bucket"]): row for row in rows}


def _hours(delta) -> float | None:
    return round(delta.total_seconds() / 3600, 2) if delta is not None else None


def percentiles(queryset, duration, bucket=None, fractions=(0.5, 0.9)) -> dict:
    """{period start: {fraction: duration}} by nearest rank, in one query; without `bucket`,
    over all rows, keyed by None."""
    queryset = queryset.order_by().annotate(  # the rows' default ordering would only cost
        duration=ExpressionWrapper(duration, output_field=DurationField()),
        bucket=bucket if bucket is not None else Value(None, output_field=DateField()),
    )
    partition = [F("bucket")] if bucket is not None else None
    ranked = queryset.annotate(
        rank=Window(RowNumber(), partition_by=partition, order_by=[F("duration").asc()]),
        size=Window(Count("pk"), partition_by=partition),
    )
    wanted = Q(pk__in=[])
    for fraction in fractions:
        wanted |= Q(rank=Ceil(F("size") * Value(fraction)))
    found: dict = {}
    rows = ranked.filter(wanted).values_list("bucket", "rank", "size", "duration")
    for period, rank, size, value in rows:  # at most len(fractions) rows per period
        for fraction in fractions:
            if rank == _nearest_rank(fraction, size):
                found.setdefault(_as_date(period), {})[fraction] = value
    return found


def _nearest_rank(fraction: float, size: int) -> int:
    return max(1, -int(-fraction * size // 1))  # ceil without floats drifting below


def _as_date(value) -> date:
    return value.date() if isinstance(value, datetime) else value


LEAD_TIME = F("finished_at") - F("version__created_at")


# --- DORA --------------------------------------------------------------------------------


def production_changes(scope: Scope):
    """Production deployments of new versions that went live in the range."""
    production = Deployment.objects.filter(
        target__environment=Environment.PRODUCTION,
        state__in=WAS_LIVE_STATES,
        rollback_of__isnull=True,
    )
    return scope.select(production, "finished_at")


def first_time_live(changes):
    """Only each version's first time live in production: a redeploy is no new change."""
    earlier = Deployment.objects.filter(
        version=OuterRef("version"),
        target__environment=Environment.PRODUCTION,
        state__in=WAS_LIVE_STATES,
        finished_at__lt=OuterRef("finished_at"),
    )
    return changes.filter(~Exists(earlier))


def restored_incidents(scope: Scope):
    """Resolved incidents of production (or of no target: they are not known to be elsewhere)."""
    resolved = Incident.objects.filter(
        Q(target__isnull=True) | Q(target__environment=Environment.PRODUCTION),
        resolved_at__isnull=False,
    )
    return scope.select(resolved, "opened_at")


def dora(scope: Scope) -> dict:
    changes = production_changes(scope)
    rolled_back = Deployment.objects.filter(rollback_of=OuterRef("pk")).exclude(
        state__in=[DeploymentState.REJECTED, DeploymentState.CANCELLED]
    )
    failed = ExpressionWrapper(
        Q(state=DeploymentState.ROLLED_BACK)
        | Q(Exists(rolled_back))
        | Q(Exists(Incident.objects.filter(deployment=OuterRef("pk")))),
        output_field=BooleanField(),
    )
    counts = per_period(
        changes.annotate(failed=failed), "finished_at", scope,
        deployments=Count("pk"), failures=Count("pk", filter=Q(failed=True)),
    )  # fmt: skip
    lead = percentiles(first_time_live(changes), LEAD_TIME, _bucket("finished_at", scope))
    restore = percentiles(
        restored_incidents(scope), MTTR, _bucket("opened_at", scope), fractions=(0.5,)
    )
    restored = per_period(restored_incidents(scope), "opened_at", scope, restored=Count("pk"))
    rows = []
    for start in scope.buckets():
        count = counts.get(start, {})
        deployments, failures = count.get("deployments", 0), count.get("failures", 0)
        rows.append({
            "period_start": start.isoformat(),
            "deployments": deployments,
            "lead_time_p50_hours": _hours(lead.get(start, {}).get(0.5)),
            "lead_time_p90_hours": _hours(lead.get(start, {}).get(0.9)),
            "failures": failures,
            "change_failure_rate": round(failures / deployments, 4) if deployments else None,
            "incidents_restored": restored.get(start, {}).get("restored", 0),
            "time_to_restore_p50_hours": _hours(restore.get(start, {}).get(0.5)),
        })  # fmt: skip
    return {"rows": rows, "summary": dora_summary(scope, changes, rows)}


def dora_summary(scope: Scope, changes, rows) -> dict:
    """The same four figures over the whole range. Counts add up over the periods (they
    cover the range); percentiles do not, so those are computed over all rows again."""
    deployments = sum(row["deployments"] for row in rows)
    failures = sum(row["failures"] for row in rows)
    lead = percentiles(first_time_live(changes), LEAD_TIME).get(None, {})
    restore = percentiles(restored_incidents(scope), MTTR, fractions=(0.5,)).get(None, {})
    return {
        "deployments": deployments,
        "lead_time_p50_hours": _hours(lead.get(0.5)),
        "lead_time_p90_hours": _hours(lead.get(0.9)),
        "failures": failures,
        "change_failure_rate": round(failures / deployments, 4) if deployments else None,
        "time_to_restore_p50_hours": _hours(restore.get(0.5)),
    }


# --- the other dashboards ----------------------------------------------------------------


def deployment_outcomes(scope: Scope) -> dict:
    """Deployments requested per period, by the state they are in now (all targets)."""
    states = [state.value for state in DeploymentState]
    requested = scope.select(Deployment.objects.all(), "created_at")
    counted = per_period(
        requested, "created_at", scope,
        **{state: Count("pk", filter=Q(state=state)) for state in states},
    )  # fmt: skip
    rows = [
        {"period_start": start.isoformat(), **{s: counted.get(start, {}).get(s, 0) for s in states}}
        for start in scope.buckets()
    ]
    return {"rows": rows, "summary": {s: sum(row[s] for row in rows) for s in states}}


def approval_waits(scope: Scope) -> dict:
    """From request to approval, for deployments an engineer approved: median and p90."""
    approved = scope.select(
        Deployment.objects.filter(approved_by__isnull=False, queued_at__isnull=False),
        "created_at",
    )
    waits = percentiles(approved, F("queued_at") - F("created_at"), _bucket("created_at", scope))
    counts = per_period(approved, "created_at", scope, approved=Count("pk"))
    rows = [
        {
            "period_start": start.isoformat(),
            "approved": counts.get(start, {}).get("approved", 0),
            "wait_p50_hours": _hours(waits.get(start, {}).get(0.5)),
            "wait_p90_hours": _hours(waits.get(start, {}).get(0.9)),
        }
        for start in scope.buckets()
    ]
    return {"rows": rows, "summary": {"approved": sum(row["approved"] for row in rows)}}


def incidents_by_severity(scope: Scope) -> dict:
    """Incidents opened per period by severity, with their MTTA and MTTR (means, hours)."""
    severities = [severity.value for severity in Severity]
    opened = scope.select(Incident.objects.all(), "opened_at")
    counted = per_period(
        opened, "opened_at", scope, mtta=Avg(MTTA), mttr=Avg(MTTR),
        **{severity: Count("pk", filter=Q(severity=severity)) for severity in severities},
    )  # fmt: skip
    rows = []
    for start in scope.buckets():
        row = counted.get(start, {})
        rows.append({
            "period_start": start.isoformat(),
            **{severity: row.get(severity, 0) for severity in severities},
            "mtta_hours": _hours(row.get("mtta")),
            "mttr_hours": _hours(row.get("mttr")),
        })  # fmt: skip
    return {"rows": rows, "summary": {s: sum(row[s] for row in rows) for s in severities}}


def health_by_target(scope: Scope) -> dict:
    """Availability and latency per target over the range, from the hourly roll-ups."""
    rows = (
        ProbeRollup.objects.filter(
            resolution=Resolution.HOUR,
            bucket_start__gte=scope.start,
            bucket_start__lt=scope.end,
            health_check__target__isnull=False,
        )
        .values(target=F("health_check__target__name"))
        .annotate(
            probes=Sum("count"),
            failures=Sum("failures"),
            latency_p95_ms=Max("latency_p95"),
        )
        .order_by("target")
    )
    results = [
        {
            "target": row["target"],
            "probes": row["probes"],
            "failures": row["failures"],
            "availability": _availability(row["probes"], row["failures"]),
            "latency_p95_ms": row["latency_p95_ms"],
        }
        for row in rows
    ]
    return {"rows": results, "summary": {"targets": len(results)}}


def _availability(probes, failures) -> float | None:
    return round(1 - failures / probes, 5) if probes else None


FIGURES = {
    "dora": dora,
    "deployments": deployment_outcomes,
    "approvals": approval_waits,
    "incidents": incidents_by_severity,
    "health": health_by_target,
}
