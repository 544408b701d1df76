"""What an approver needs to see, assembled by the portal rather than asked of people."""

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from deployments.charts import metric_deltas
from deployments.models import Deployment
from deployments.services.rollouts import blocking_incidents
from monitoring import series
from monitoring.choices import UNRESOLVED_STATES
from monitoring.models import HealthCheck, Incident


def approval_evidence(deployment) -> dict:
    """The candidate's metrics beside the live version's (with deltas) and its validation."""
    live = (
        Deployment.objects.live()
        .filter(target=deployment.target)
        .exclude(pk=deployment.pk)
        .select_related("version__model")
        .first()
    )
    candidate = deployment.version
    if live is not None:
        rows = metric_deltas(live.version, candidate)
    else:
        rows = [
            {"name": name, "a": None, "b": value, "delta": None}
            for name, value in sorted(candidate.metrics.items())
        ]
    return {
        "live": live,
        "metric_rows": rows,
        "validation_status": candidate.status,
        "validation_detail": candidate.status_detail,
        "open_incidents": open_incidents(deployment),
        "health": target_health(deployment.target),
        "blocking": blocking_incidents(deployment),
    }


def open_incidents(deployment):
    """Unresolved incidents on the target or on any version of the model."""
    return list(
        Incident.objects.filter(
            Q(target=deployment.target) | Q(version__model_id=deployment.version.model_id),
            state__in=UNRESOLVED_STATES,
        )
        .select_related("target")
        .order_by("severity", "-opened_at")[:20]
    )


def target_health(target) -> list[dict]:
    """The target's checks with their state and 24 h uptime."""
    target_checks = list(HealthCheck.objects.filter(target=target).order_by("name"))
    uptimes = series.uptime([c.pk for c in target_checks], timezone.now() - timedelta(days=1))
    return [{"check": check, "uptime": uptimes[check.pk]} for check in target_checks]
