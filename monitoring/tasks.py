"""Celery entry points for monitoring: thin wrappers over services."""

import logging

from celery import shared_task
from redis import RedisError

from mlops_portal.core import metrics
from monitoring.services import (
    alerts,
    checks,
    drift,
    heartbeats,
    predictions,
    quality,
    rollups,
    serving,
)

log = logging.getLogger(__name__)


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


@shared_task(ignore_result=True)
def collect_predictions() -> dict:
    """Beat, every PREDICTION_COLLECT_INTERVAL_SECONDS: the prediction log's new entries
    into LoggedPrediction rows (a bounded batch per run). Without Redis (`make run` on the
    filesystem broker) there is no log to collect: one warning a run, no traceback."""
    try:
        return predictions.collect_predictions()
    except RedisError as exc:
        log.warning(f"The prediction log's Redis does not answer: {exc}")
        return {"unavailable": 1}


@shared_task(ignore_result=True)
def roll_up_live_quality(version_ids=None) -> int:
    """Beat, hourly, for every version; and after feedback, for its version (on demand)."""
    return quality.roll_up(version_ids)
