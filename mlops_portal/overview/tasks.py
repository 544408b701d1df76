"""Celery entry points of notifications: thin wrappers that take IDs and call the module.

Their names are the ones they had as `mlops_portal.tasks` (outbox rows, routes and beat
schedules store names); the shell's `mlops_portal/tasks.py` imports them so Celery's
autodiscovery registers them."""

from celery import shared_task

from mlops_portal.core import outbox
from mlops_portal.overview import notifications, retention


@shared_task(name="mlops_portal.tasks.deliver_notification_task", soft_time_limit=60)
def deliver_notification_task(delivery_id: int) -> str:
    """Send one delivery; a failed send schedules its own retry with backoff."""
    retry_in = notifications.deliver(delivery_id)
    if retry_in is not None:
        # Through the outbox: a retry sent while the broker is away is not lost.
        outbox.enqueue(deliver_notification_task, delivery_id, countdown=retry_in)
        return f"retry in {retry_in:g} s"
    return "done"


@shared_task(name="mlops_portal.tasks.sweep_deliveries_task")
def sweep_deliveries_task() -> dict:
    return notifications.sweep_deliveries()


@shared_task(name="mlops_portal.tasks.send_daily_digests_task")
def send_daily_digests_task() -> int:
    """Beat, daily at NOTIFICATIONS_DIGEST_TIME: one digest per user with something to read."""
    return notifications.send_daily_digests()


@shared_task(name="mlops_portal.tasks.prune_old_records_task")
def prune_old_records_task() -> dict:
    """Beat, hourly: delete job logs, notifications and change records past their retention."""
    return retention.prune_old_records()
