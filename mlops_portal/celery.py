"""The Celery app: configured from Django settings (`CELERY_*`), tasks found per app."""

import os

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops_portal.settings")

app = Celery("mlops_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def forget_cached_content_types(**kwargs):
    """Content types are cached per process, and change records point at them. A worker
    outlives migrations (and the test suite's table flushes), so each task reads them anew."""
    from django.contrib.contenttypes.models import ContentType

    ContentType.objects.clear_cache()
