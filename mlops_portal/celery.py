"""The Celery app: configured from Django settings (`CELERY_*`), tasks found per app."""

import os
import time

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun

from mlops_portal.core import metrics

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops_portal.settings")


def celery_settings() -> dict:
    """The `CELERY_*` Django settings under Celery's own names (CELERY_TASK_ROUTES → task_routes).

    Celery reads a dozen settings on every publish. Read through django.conf.settings with a
    namespace, each read tries several names on a lazy object and raises on every miss, which
    made a third of what enqueueing a job costs; from a plain dict it is a lookup."""
    from django.conf import settings

    prefix = "CELERY_"
    return {
        name.removeprefix(prefix).lower(): getattr(settings, name)
        for name in dir(settings)
        if name.startswith(prefix)
    }


app = Celery("mlops_portal")
app.add_defaults(celery_settings)  # called when Celery first reads its configuration
app.autodiscover_tasks()


@task_prerun.connect
def forget_cached_content_types(**kwargs):
    """Content types are cached per process, and change records point at them. A worker
    outlives migrations (and the test suite's table flushes), so each task reads them anew."""
    from django.contrib.contenttypes.models import ContentType

    ContentType.objects.clear_cache()


@before_task_publish.connect
def stamp_sent_at(headers=None, **kwargs):
    """The publish time rides in the message, so /metrics can tell how long the oldest job
    of a queue has waited."""
    if headers is not None:
        headers[metrics.SENT_AT_HEADER] = time.time()


_started: dict[str, float] = {}  # task id -> monotonic start, in the process running it


@task_prerun.connect
def note_start(task_id=None, **kwargs):
    _started[task_id] = time.monotonic()


@task_postrun.connect
def count_job(task_id=None, task=None, state=None, **kwargs):
    """Count every finished job by task and outcome (success, failure, retry…) with its
    duration, for /metrics (mlops_portal.core.metrics)."""
    started = _started.pop(task_id, None)
    if task is None or started is None:
        return
    metrics.record_job(task.name, (state or "unknown").lower(), time.monotonic() - started)
