"""The tasks of the mlops_portal app, found here by Celery's autodiscovery; the
notification tasks live in `mlops_portal.overview.tasks`, with their names unchanged."""

from celery import shared_task

from mlops_portal.core.api import idempotency
from mlops_portal.overview.tasks import (  # noqa: F401
    deliver_notification_task,
    prune_old_records_task,
    send_daily_digests_task,
    sweep_deliveries_task,
)


@shared_task(name="mlops_portal.tasks.prune_idempotency_keys_task")
def prune_idempotency_keys_task() -> int:
    """Beat, hourly: forget Idempotency-Keys older than IDEMPOTENCY_KEY_RETENTION_HOURS."""
    return idempotency.prune()
