"""What `/metrics` reads when Prometheus scrapes: the portal's state, from its honest source.

Deployments by state, open incidents by severity, the outbox backlog and the probe engine's
lag are SQL aggregations (one query each; the outbox and probe ones use the partial and due
indexes their relay and dispatcher use, the other two count tables of hundreds or thousands
of rows); queue depths and the oldest waiting job per queue come from the broker. Counts
that processes keep (requests, queries, jobs, probes) come from `mlops_portal.core.metrics`.
"""

import hmac
import ipaddress
import logging

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily

from deployments.choices import DeploymentState
from deployments.models import Deployment
from mlops_portal.core import metrics
from mlops_portal.core.security_log import client_ip
from mlops_portal.health import queue_state
from mlops_portal.models import OutboxMessage
from monitoring.choices import UNRESOLVED_STATES, Severity
from monitoring.models import HealthCheck, Incident

log = logging.getLogger(__name__)


def render() -> bytes:
    """The Prometheus text exposition of every family."""
    registry = metrics.scrape_registry()
    registry.register(StateCollector())
    registry.register(QueueCollector())
    return generate_latest(registry)


def allowed(request) -> bool | None:
    """True when the caller may scrape: the right `Authorization: Bearer METRICS_TOKEN`, or
    an address in METRICS_ALLOWED_NETWORKS. False for a wrong or missing token when a token
    is set (401); None when neither is configured or the address is not allowed (403)."""
    token = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").encode(), token.encode())
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        address = None
    if address and any(address in net for net in allowed_networks()):
        return True
    return False if token else None


def allowed_networks():
    return [ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_NETWORKS]


class StateCollector:
    """Deployments by state, open incidents by severity, the outbox backlog, probe lag."""

    def collect(self):
        now = timezone.now()
        deployments = GaugeMetricFamily(
            "portal_deployments", "Deployments by state.", labels=["state"]
        )
        by_state = dict(Deployment.objects.order_by().values_list("state").annotate(n=Count("pk")))
        for state in DeploymentState.values:
            deployments.add_metric([state], by_state.get(state, 0))
        yield deployments

        incidents = GaugeMetricFamily(
            "portal_incidents_open", "Unresolved incidents by severity.", labels=["severity"]
        )
        by_severity = dict(
            Incident.objects.filter(state__in=UNRESOLVED_STATES)
            .order_by().values_list("severity").annotate(n=Count("pk"))
        )  # fmt: skip
        for severity in Severity.values:
            incidents.add_metric([severity], by_severity.get(severity, 0))
        yield incidents

        pending = OutboxMessage.objects.filter(published_at__isnull=True).aggregate(
            n=Count("pk"), oldest=Min("created_at")
        )
        yield GaugeMetricFamily(
            "portal_outbox_pending", "Jobs written to the outbox and not yet published.",
            value=pending["n"],
        )  # fmt: skip
        yield GaugeMetricFamily(
            "portal_outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished outbox job; 0 when none waits.",
            value=age(now, pending["oldest"]),
        )

        due = HealthCheck.objects.filter(enabled=True, next_due_at__lte=now).aggregate(
            n=Count("pk"), oldest=Min("next_due_at")
        )
        yield GaugeMetricFamily(
            "portal_probes_due", "Enabled checks whose next probe is due and not yet claimed.",
            value=due["n"],
        )  # fmt: skip
        yield GaugeMetricFamily(
            "portal_probe_lag_seconds",
            "How far the probe engine is behind schedule: now minus the earliest due time.",
            value=age(now, due["oldest"]),
        )


class QueueCollector:
    """Messages waiting in each Celery queue and the age of the oldest, from Redis."""

    def collect(self):
        depth = GaugeMetricFamily(
            "portal_celery_queue_length", "Jobs waiting in a Celery queue.", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "portal_celery_queue_oldest_job_age_seconds",
            "Seconds the oldest waiting job of a queue has waited; 0 when the queue is empty.",
            labels=["queue"],
        )
        try:
            for queue, (length, waited) in queue_state().items():
                depth.add_metric([queue], length)
                oldest.add_metric([queue], waited)
        except Exception as exc:  # the broker is down: the families stay empty
            log.warning("metrics: cannot read the queues: %s", exc)
        yield depth
        yield oldest


def age(now, moment) -> float:
    return max(0.0, (now - moment).total_seconds()) if moment else 0.0
