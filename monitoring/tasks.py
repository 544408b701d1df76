"""Celery entry points for monitoring: thin wrappers over services."""

from celery import shared_task

from mlops_portal.core import metrics
from monitoring.services import checks, rollups


@shared_task(ignore_result=True)
def dispatch_probes() -> int:
    """Beat, every few seconds: probe every due check in one concurrent run."""
    probed = checks.run_probes()
    metrics.record_probes(probed)  # /metrics: probes per second
    return probed


@shared_task
def roll_up_and_prune() -> dict:
    return rollups.roll_up_and_prune()


@shared_task
def resolve_quiet_incidents() -> int:
    return checks.resolve_quiet_incidents()
