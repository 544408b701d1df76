"""The tasks of the mlops_portal app, found here by Celery's autodiscovery; they live in
`mlops_portal.overview.tasks` (notifications), with their names unchanged."""

from mlops_portal.overview.tasks import (  # noqa: F401
    deliver_notification_task,
    prune_old_records_task,
    send_daily_digests_task,
    sweep_deliveries_task,
)
