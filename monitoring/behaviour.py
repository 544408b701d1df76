"""How a model version behaved in production while it was live: availability, latency and
incident minutes, so versions compare on production behaviour, not only offline metrics."""

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import F, Q, Sum
from django.utils import timezone

from deployments.choices import WAS_LIVE_STATES, DeploymentState
from deployments.models import DeploymentEvent
from monitoring.choices import Resolution
from monitoring.models import Incident, ProbeRollup


@dataclass(frozen=True)
class LiveStats:
    target: str
    live_for: timedelta
    probes: int
    availability: float | None
    latency_p50_ms: float | None
    incident_minutes: float


def live_windows(version):
    """(deployment, start, end) for each time `version` was live on a production target."""
    deployments = list(
        version.deployments.filter(state__in=WAS_LIVE_STATES, target__environment="production")
        .select_related("target")
        .order_by("finished_at")
    )
    ended = dict(
        DeploymentEvent.objects.filter(
            deployment__in=deployments,
            to_state__in=[DeploymentState.SUPERSEDED, DeploymentState.ROLLED_BACK],
        ).values_list("deployment_id", "created_at")
    )
    now = timezone.now()
    return [(d, d.finished_at, ended.get(d.pk, now)) for d in deployments if d.finished_at]


def production_stats(version) -> list[LiveStats]:
    stats = []
    for deployment, start, end in live_windows(version):
        probes = ProbeRollup.objects.filter(
            health_check__target=deployment.target,
            health_check__follows_target=True,
            resolution=Resolution.MINUTE,
            bucket_start__gte=start.replace(second=0, microsecond=0),
            bucket_start__lt=end,
        ).aggregate(
            total=Sum("count"), failed=Sum("failures"), p50=Sum(F("latency_p50") * F("count"))
        )
        total = probes["total"] or 0
        stats.append(
            LiveStats(
                target=deployment.target.name,
                live_for=end - start,
                probes=total,
                availability=(total - probes["failed"]) / total if total else None,
                latency_p50_ms=probes["p50"] / total if total and probes["p50"] else None,
                incident_minutes=incident_minutes(deployment.target, start, end),
            )
        )
    return stats


def incident_minutes(target, start, end) -> float:
    """Minutes of [start, end) during which an incident on `target` was unresolved."""
    overlapping = Incident.objects.filter(
        Q(resolved_at__isnull=True) | Q(resolved_at__gt=start), target=target, opened_at__lt=end
    ).values_list("opened_at", "resolved_at")
    total = timedelta()
    for opened, resolved in overlapping:
        total += min(resolved or end, end) - max(opened, start)
    return round(total.total_seconds() / 60, 1)
