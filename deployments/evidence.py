"""What an approver needs to see, assembled by the portal rather than asked of people."""

from deployments.charts import metric_deltas
from deployments.models import Deployment


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
    }
