"""How monitoring plugs into deployments without deployments importing it: subscribers to
deployment events (`mlops_portal.core.events`) and answers to deployments' questions
(`deployments.hooks`). Registered in `MonitoringConfig.ready`.

The subscribers run in the deployment's transaction: the deploy window must be open before
the backend restarts the server, and the live-endpoint check commits with the deployment
going live."""

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from deployments import hooks
from mlops_portal.core import events
from monitoring import series
from monitoring.choices import UNRESOLVED_STATES, Severity
from monitoring.models import HealthCheck, Incident
from monitoring.services import checks

# --- domain events -----------------------------------------------------------------------


def open_deploy_window(deployment) -> None:
    checks.begin_deploy_window(deployment)  # the expected restart raises no incident


def close_deploy_window(deployment, event) -> None:
    checks.end_deploy_window(deployment)


def watch_the_new_endpoint(deployment, event) -> None:
    checks.end_deploy_window(deployment)
    checks.follow_live_endpoint(deployment.target, deployment.endpoint)


# --- deployments' questions --------------------------------------------------------------


def blocking_incidents(deployment) -> list:
    """Unresolved SEV1/SEV2 incidents on the deployment's target."""
    return list(
        Incident.objects.filter(
            target=deployment.target,
            state__in=UNRESOLVED_STATES,
            severity__in=[Severity.SEV1, Severity.SEV2],
        ).order_by("pk")
    )


def open_incidents(deployment) -> list:
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


def register() -> None:
    events.subscribe("deployment.started", open_deploy_window)
    events.subscribe("deployment.live", watch_the_new_endpoint)
    events.subscribe("deployment.failed", close_deploy_window)
    hooks.answer("blocking_incidents", blocking_incidents)
    hooks.answer("open_incidents", open_incidents)
    hooks.answer("target_health", target_health)
