"""Celery entry points for monitoring: thin wrappers over services."""

from celery import shared_task

from mlops_portal.core import metrics
from monitoring.services import alerts, checks, drift, heartbeats, rollups, serving


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


@shared_task(ignore_result=True)
def scrape_serving_metrics() -> dict:
    """Beat, every SERVING_SCRAPE_INTERVAL_SECONDS: read every live model server's /metrics,
    then evaluate the alert rules on what it read."""
    scraped = serving.scrape_live_deployments()
    return {**scraped, **alerts.evaluate_rules()}


@shared_task(ignore_result=True)
def compute_drift() -> dict:
    """Beat, every DRIFT_INTERVAL_SECONDS: score each live version's last window of logged
    rows against its reference, then evaluate the alert rules on the new figures."""
    return {**drift.compute_drift(), **alerts.evaluate_rules()}


@shared_task(ignore_result=True)
def mark_overdue_heartbeats() -> int:
    """Beat, every 10 s: heartbeats whose job has not pinged within period + grace go down."""
    return heartbeats.mark_overdue()
