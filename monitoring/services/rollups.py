"""Roll raw probe results up per minute and per hour, and prune old raw results.

Minute roll-ups are computed from raw results (exact count, failures, p50, p95, max); hour
roll-ups from minute roll-ups: count, failures and max stay exact, p50 is the count-weighted
mean of the minutes' p50 and p95 the highest minute p95 (a conservative bound), so an hour
never rescans up to 360 raw rows per check."""

from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from monitoring.choices import Resolution
from monitoring.models import ProbeResult, ProbeRollup
from monitoring.services import heartbeats, serving

RECOMPUTE_MINUTES = 5  # late results (a slow probe run) still land in their minute
MINUTE_ROLLUP_RETENTION_DAYS = 8

MINUTE_SQL_POSTGRES = """
INSERT INTO {rollup} (health_check_id, resolution, bucket_start, count, failures,
                      latency_p50, latency_p95, latency_max)
SELECT health_check_id, 'minute', date_trunc('minute', at), count(*),
       count(*) FILTER (WHERE NOT ok),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms),
       max(latency_ms)
FROM {result} WHERE at >= %s AND at < %s
GROUP BY health_check_id, date_trunc('minute', at)
ON CONFLICT (health_check_id, resolution, bucket_start) DO UPDATE SET
    count = EXCLUDED.count, failures = EXCLUDED.failures, latency_p50 = EXCLUDED.latency_p50,
    latency_p95 = EXCLUDED.latency_p95, latency_max = EXCLUDED.latency_max
"""


def roll_up_and_prune(now=None) -> dict[str, int]:
    """The periodic job: recent minutes, the current and previous hour, then pruning."""
    now = now or timezone.now()
    minute = now.replace(second=0, microsecond=0)
    hour = minute.replace(minute=0)
    minutes = roll_up_minutes(minute - timedelta(minutes=RECOMPUTE_MINUTES), minute)
    hours = roll_up_hours(hour - timedelta(hours=1), minute)
    return {"minutes": minutes, "hours": hours, **prune(now)}


def roll_up_minutes(start, end) -> int:
    """(Re)compute the minute roll-ups of [start, end); return how many buckets."""
    if connection.vendor == "postgresql":
        sql = MINUTE_SQL_POSTGRES.format(
            rollup=ProbeRollup._meta.db_table, result=ProbeResult._meta.db_table
        )
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [start, end])
            return cursor.rowcount
    return _roll_up_minutes_in_python(start, end)


def _roll_up_minutes_in_python(start, end) -> int:
    """SQLite has no percentile aggregate; at embedded scale Python does the same sums."""
    buckets = defaultdict(list)
    rows = ProbeResult.objects.filter(at__gte=start, at__lt=end).values_list(
        "health_check_id", "at", "ok", "latency_ms"
    )
    for check_id, at, ok, latency in rows:
        buckets[(check_id, at.replace(second=0, microsecond=0))].append((ok, latency))
    with transaction.atomic():
        for (check_id, bucket), probes in buckets.items():
            latencies = sorted(lat for _, lat in probes if lat is not None)
            ProbeRollup.objects.update_or_create(
                health_check_id=check_id,
                resolution=Resolution.MINUTE,
                bucket_start=bucket,
                defaults={
                    "count": len(probes),
                    "failures": sum(1 for ok, _ in probes if not ok),
                    "latency_p50": percentile(latencies, 0.5),
                    "latency_p95": percentile(latencies, 0.95),
                    "latency_max": latencies[-1] if latencies else None,
                },
            )
    return len(buckets)


def roll_up_hours(start, end) -> int:
    """(Re)compute hour roll-ups of [start, end) from minute roll-ups."""
    minutes = (
        ProbeRollup.objects.filter(
            resolution=Resolution.MINUTE, bucket_start__gte=start, bucket_start__lt=end
        )
        .annotate(hour=TruncHour("bucket_start"))
        .values("health_check_id", "hour")
        .annotate(
            total=Sum("count"),
            failed=Sum("failures"),
            p50_weighted=Sum(F("latency_p50") * F("count")),
            p95=Max("latency_p95"),
            worst=Max("latency_max"),
        )
    )
    rows = [
        ProbeRollup(
            health_check_id=row["health_check_id"],
            resolution=Resolution.HOUR,
            bucket_start=row["hour"],
            count=row["total"],
            failures=row["failed"],
            latency_p50=row["p50_weighted"] / row["total"] if row["p50_weighted"] else None,
            latency_p95=row["p95"],
            latency_max=row["worst"],
        )
        for row in minutes
    ]
    ProbeRollup.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["health_check", "resolution", "bucket_start"],
        update_fields=["count", "failures", "latency_p50", "latency_p95", "latency_max"],
        batch_size=1000,
    )
    return len(rows)


def prune(now) -> dict[str, int]:
    raw_cutoff = now - timedelta(days=settings.HEALTHCHECK_RESULT_RETENTION_DAYS)
    minute_cutoff = now - timedelta(days=MINUTE_ROLLUP_RETENTION_DAYS)
    raw, _ = ProbeResult.objects.filter(at__lt=raw_cutoff).delete()
    minutes, _ = ProbeRollup.objects.filter(
        resolution=Resolution.MINUTE, bucket_start__lt=minute_cutoff
    ).delete()
    return {
        "pruned_results": raw,
        "pruned_minutes": minutes,
        "pruned_serving": serving.prune(now),
        "pruned_pings": heartbeats.prune(now),
    }


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Linear interpolation, as PostgreSQL's percentile_cont."""
    if not sorted_values:
        return None
    if len(sorted_values) == 1:
        return sorted_values[0]
    position = fraction * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


__all__ = ["percentile", "prune", "roll_up_and_prune", "roll_up_hours", "roll_up_minutes"]
