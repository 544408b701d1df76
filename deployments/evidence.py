"""What an approver needs to see, assembled by the portal rather than asked of people."""

from deployments import hooks
from deployments.charts import metric_deltas
from deployments.models import Deployment
from deployments.services.rollouts import blocking_incidents


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


def open_incidents(deployment) -> list:
    """Unresolved incidents on the target or on any version of the model (from monitoring)."""
    return hooks.ask("open_incidents", deployment)


def target_health(target) -> list[dict]:
    """The target's checks with their state and 24 h uptime (from monitoring)."""
    return hooks.ask("target_health", target)
