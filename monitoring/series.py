"""Time series of a check's probes for charts and the API, downsampled on the server:
raw results up to an hour, minute roll-ups up to a day, hour roll-ups beyond. Ranges past
a day never read raw results."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Sum
from django.utils import timezone

from monitoring.choices import Resolution
from monitoring.models import ProbeResult, ProbeRollup

RANGES = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7),
          "30d": timedelta(days=30)}  # fmt: skip
BUCKETS = ("raw", Resolution.MINUTE, Resolution.HOUR)


@dataclass(frozen=True)
class Point:
    t: datetime
    count: int
    failures: int
    p50: float | None
    p95: float | None
    max: float | None

    @property
    def availability(self) -> float | None:
        return (self.count - self.failures) / self.count if self.count else None


def bucket_for(since: datetime, until: datetime) -> str:
    span = until - since
    if span <= timedelta(hours=1):
        return "raw"
    if span <= timedelta(days=1):
        return Resolution.MINUTE
    return Resolution.HOUR


def points(check_id: int, since: datetime, until: datetime, bucket: str | None = None):
    """The series of one check in [since, until) at `bucket` (chosen from the span if None)."""
    bucket = bucket or bucket_for(since, until)
    if bucket == "raw":
        rows = (
            ProbeResult.objects.filter(health_check_id=check_id, at__gte=since, at__lt=until)
            .order_by("at")
            .values_list("at", "ok", "latency_ms")
        )
        return [Point(at, 1, 0 if ok else 1, lat, lat, lat) for at, ok, lat in rows]
    rows = (
        ProbeRollup.objects.filter(
            health_check_id=check_id,
            resolution=bucket,
            bucket_start__gte=since,
            bucket_start__lt=until,
        )
        .order_by("bucket_start")
        .values_list(
            "bucket_start", "count", "failures", "latency_p50", "latency_p95", "latency_max"
        )
    )
    return [Point(*row) for row in rows]


def uptime(check_ids, since: datetime, until: datetime | None = None) -> dict[int, float | None]:
    """Share of successful probes per check since `since`, from roll-ups (one query)."""
    until = until or timezone.now()
    resolution = Resolution.MINUTE if until - since <= timedelta(days=1) else Resolution.HOUR
    totals = (
        ProbeRollup.objects.filter(
            health_check_id__in=list(check_ids),
            resolution=resolution,
            bucket_start__gte=since,
            bucket_start__lt=until,
        )
        .values("health_check_id")
        .annotate(total=Sum("count"), failed=Sum("failures"))
    )
    found = {row["health_check_id"]: row for row in totals}
    return {
        check_id: (
            (found[check_id]["total"] - found[check_id]["failed"]) / found[check_id]["total"]
            if check_id in found and found[check_id]["total"]
            else None
        )
        for check_id in check_ids
    }


def sparklines(check_ids, now=None) -> dict[int, list[float | None]]:
    """24 hourly p50 latencies per check (None where no data), in one query."""
    now = now or timezone.now()
    start = (now - timedelta(hours=23)).replace(minute=0, second=0, microsecond=0)
    hours = [start + timedelta(hours=i) for i in range(24)]
    values = {check_id: dict.fromkeys(hours) for check_id in check_ids}
    rows = ProbeRollup.objects.filter(
        health_check_id__in=list(check_ids), resolution=Resolution.HOUR, bucket_start__gte=start
    ).values_list("health_check_id", "bucket_start", "latency_p50")
    for check_id, bucket, p50 in rows:
        if bucket in values[check_id]:
            values[check_id][bucket] = p50
    return {check_id: list(series.values()) for check_id, series in values.items()}
