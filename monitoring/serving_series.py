"""Serving metrics for charts: a deployment's or a version's roll-ups over time, and the
"before / after" comparison of a new deployment with the version it replaced. Totals are
summed by the database; only the small per-bucket JSON (latency histogram, classes) is
merged here."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Max, Sum
from django.utils import timezone

from deployments.choices import WAS_LIVE_STATES
from deployments.models import Deployment
from monitoring.choices import Resolution
from monitoring.models import ServingRollup
from monitoring.services.serving import merge, quantiles

DEPLOYMENT_SPAN = timedelta(days=1)  # minute buckets
VERSION_SPAN = timedelta(days=7)  # hour buckets
AFTER_SPAN = timedelta(hours=1)  # a new deployment's first hour …
BEFORE_SPAN = timedelta(days=1)  # … against the previous version's last day


@dataclass(frozen=True)
class ServingPoint:
    t: datetime
    requests: int
    errors: int
    client_errors: int
    p50: float | None
    p95: float | None
    p99: float | None
    predictions: dict = field(default_factory=dict)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


COLUMNS = ("bucket_start", "requests", "errors", "client_errors", "latency_p50", "latency_p95",
           "latency_p99", "predictions")  # fmt: skip


def deployment_points(deployment_id: int, until=None) -> list[ServingPoint]:
    """A deployment's minute buckets over the last day (one query)."""
    until = until or timezone.now()
    rows = ServingRollup.objects.filter(
        deployment_id=deployment_id, resolution=Resolution.MINUTE,
        bucket_start__gte=until - DEPLOYMENT_SPAN, bucket_start__lt=until,
    ).values_list(*COLUMNS)  # fmt: skip
    return [ServingPoint(*row) for row in rows.order_by("bucket_start")]


def version_points(version_id: int, until=None) -> list[ServingPoint]:
    """A version's hour buckets over the last week, summed over its deployments in SQL;
    latency is the worst deployment's (two queries)."""
    until = until or timezone.now()
    rows = ServingRollup.objects.filter(
        version_id=version_id, resolution=Resolution.HOUR,
        bucket_start__gte=until - VERSION_SPAN, bucket_start__lt=until,
    )  # fmt: skip
    totals = (
        rows.values("bucket_start")
        .annotate(
            n=Sum("requests"),
            e=Sum("errors"),
            c=Sum("client_errors"),
            p50=Max("latency_p50"),
            p95=Max("latency_p95"),
            p99=Max("latency_p99"),
        )
        .order_by("bucket_start")
    )
    classes: dict = {}
    for start, predictions in rows.values_list("bucket_start", "predictions"):
        classes[start] = merge(classes.get(start, {}), predictions)
    return [
        ServingPoint(r["bucket_start"], r["n"], r["e"], r["c"], r["p50"], r["p95"], r["p99"],
                     classes.get(r["bucket_start"], {}))
        for r in totals
    ]  # fmt: skip


def previous_deployment(deployment):
    """What was live on the deployment's target just before it went live."""
    if deployment.finished_at is None:
        return None
    return (
        Deployment.objects.filter(
            target_id=deployment.target_id,
            state__in=WAS_LIVE_STATES,
            finished_at__lt=deployment.finished_at,
        )
        .exclude(pk=deployment.pk)
        .select_related("version__model")
        .order_by("-finished_at")
        .first()
    )


def before_after(deployment) -> dict | None:
    """The deployment's first hour beside the previous deployment's last day on the same
    target: requests per minute, error rate, latency, share of each class. None before the
    deployment went live."""
    if deployment.finished_at is None:
        return None
    went_live = deployment.finished_at
    after = summary(
        ServingRollup.objects.filter(
            deployment=deployment,
            resolution=Resolution.MINUTE,
            bucket_start__gte=went_live.replace(second=0, microsecond=0),
            bucket_start__lt=went_live + AFTER_SPAN,
        ),
        Resolution.MINUTE,
    )
    previous = previous_deployment(deployment)
    before = None
    if previous is not None:
        before = summary(
            ServingRollup.objects.filter(
                deployment=previous,
                resolution=Resolution.HOUR,
                bucket_start__gte=(went_live - BEFORE_SPAN).replace(
                    minute=0, second=0, microsecond=0
                ),
                bucket_start__lt=went_live,
            ),
            Resolution.HOUR,
        )
    labels = sorted(set(after["shares"]) | set((before or {}).get("shares", {})))
    return {"previous": previous, "before": before, "after": after, "labels": labels}


def summary(rollups, resolution) -> dict:
    """Totals of a set of roll-ups (summed in SQL), latency quantiles from their merged
    histograms, and the share of each predicted class."""
    totals = rollups.aggregate(requests=Sum("requests"), errors=Sum("errors"), buckets=Count("pk"))
    requests = totals["requests"] or 0
    histogram, classes = {}, {}
    for latency, predictions in rollups.values_list("latency_buckets", "predictions"):
        histogram, classes = merge(histogram, latency), merge(classes, predictions)
    minutes = totals["buckets"] * (1 if resolution == Resolution.MINUTE else 60)
    counted = sum(classes.values())
    p50, p95, p99 = quantiles(histogram)
    return {
        "requests": requests,
        "per_minute": requests / minutes if minutes else None,
        "error_rate": (totals["errors"] or 0) / requests if requests else None,
        "p50": p50, "p95": p95, "p99": p99,
        "shares": {label: n / counted for label, n in classes.items()} if counted else {},
    }  # fmt: skip
