"""Retention: old rows that only grow are deleted by a beat job, as probe results are
(monitoring.services.rollups.prune). One setting per kind, in days; 0 keeps them forever.

- job logs (`DeploymentLogLine`): JOB_LOG_RETENTION_DAYS, lines of deployments that ended;
- notifications and their deliveries: NOTIFICATION_RETENTION_DAYS, once no delivery of the
  notification is still pending, sending or retrying;
- change records (auditlog's `LogEntry`): CHANGE_RECORD_RETENTION_DAYS;
- the prediction log (`LoggedPrediction`, with its feedback labels):
  PREDICTION_LOG_RETENTION_DAYS, by when the prediction was made. The hourly live-quality
  roll-ups (`LiveQuality`) are kept, so the quality chart outlives the rows.
- drift figures (`DriftScore`): DRIFT_SCORE_RETENTION_DAYS, by the end of their window.

Deletes go in batches of BATCH rows, each its own short transaction, so a first run over a
large backlog never holds long locks.
"""

from datetime import timedelta

from auditlog.models import LogEntry
from django.conf import settings
from django.utils import timezone

from deployments.choices import DeploymentState
from deployments.models import DeploymentLogLine
from mlops_portal.choices import DeliveryStatus
from mlops_portal.models import Notification
from monitoring.models import DriftScore, LoggedPrediction

BATCH = 5_000
UNFINISHED_DELIVERIES = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.RETRYING)
UNFINISHED_DEPLOYMENTS = (DeploymentState.RUNNING, DeploymentState.QUEUED)


def prune_old_records(now=None) -> dict[str, int]:
    """Delete what is older than its retention; return how many rows of each kind."""
    now = now or timezone.now()
    pruned = {}
    days = settings.JOB_LOG_RETENTION_DAYS
    if days:
        pruned["job_log_lines"] = delete_in_batches(
            DeploymentLogLine.objects.filter(created_at__lt=now - timedelta(days=days)).exclude(
                deployment__state__in=UNFINISHED_DEPLOYMENTS
            )
        )
    days = settings.NOTIFICATION_RETENTION_DAYS
    if days:
        pruned["notifications"] = delete_in_batches(
            Notification.objects.filter(created_at__lt=now - timedelta(days=days)).exclude(
                deliveries__status__in=UNFINISHED_DELIVERIES
            )
        )  # their deliveries go with them (CASCADE)
    days = settings.CHANGE_RECORD_RETENTION_DAYS
    if days:
        pruned["change_records"] = delete_in_batches(
            LogEntry.objects.filter(timestamp__lt=now - timedelta(days=days))
        )
    days = settings.PREDICTION_LOG_RETENTION_DAYS
    if days:
        pruned["logged_predictions"] = delete_in_batches(
            LoggedPrediction.objects.filter(logged_at__lt=now - timedelta(days=days))
        )
    days = settings.DRIFT_SCORE_RETENTION_DAYS
    if days:
        pruned["drift_scores"] = delete_in_batches(
            DriftScore.objects.filter(window_end__lt=now - timedelta(days=days))
        )
    return pruned


def delete_in_batches(queryset) -> int:
    """Delete the rows of `queryset`, BATCH at a time; return how many (cascades excluded)."""
    model, deleted = queryset.model, 0
    while True:
        ids = list(queryset.order_by().values_list("pk", flat=True)[:BATCH])
        if not ids:
            return deleted
        model.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
