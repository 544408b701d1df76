"""The Celery app: configured from Django settings (`CELERY_*`), tasks found per app."""

import atexit
import logging
import os
import socket
import time

from celery import Celery
from celery.signals import (
    beat_init,
    before_task_publish,
    setup_logging,
    task_postrun,
    task_prerun,
)

from mlops_portal.core import logs, metrics

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


@setup_logging.connect
def use_django_logging(loglevel=None, **kwargs):
    """Workers and beat log through Django's LOGGING (mlops_portal.core.logs: JSON or
    readable lines, request ids, redaction) instead of Celery's own format; the command
    line's --loglevel still sets the level."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@before_task_publish.connect
def stamp_message(headers=None, **kwargs):
    """Every message carries the request id it was sent for (the caller's, or one made here
    for jobs nobody asked for by a request, such as beat's) and its publish time, so
    /metrics can tell how long the oldest job of a queue has waited."""
    if headers is None:
        return
    headers[metrics.SENT_AT_HEADER] = time.time()
    if not headers.get(logs.JOB_REQUEST_ID_HEADER):
        headers[logs.JOB_REQUEST_ID_HEADER] = logs.current_request_id() or logs.new_request_id()
    if _beat["running"]:
        beat_heartbeat()


_beat = {"running": False, "written": 0.0}
BEAT_HEARTBEAT_EVERY = 5.0  # seconds between two writes of beat's heartbeat row


# One beat for the whole portal: two would send every scheduled job twice. Beat holds this
# key in the shared cache (Redis) while it runs, refreshed with its heartbeat; a second
# beat, on any node, refuses to start. A beat killed with -9 frees it after the timeout.
BEAT_LOCK_KEY = "portal:beat:lock"
BEAT_LOCK_SECONDS = 30


@beat_init.connect
def note_beat(**kwargs):
    """This process is beat: its sends are its heartbeat (/readyz, "when beat last ran"),
    if it is the only one (see BEAT_LOCK_KEY)."""
    take_beat_lock()
    _beat["running"] = True


def beat_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def take_beat_lock() -> None:
    """Take the beat lock, or stop this process (SystemExit: beat exits with status 1) when
    another beat holds it. A cache that cannot be reached takes nothing and stops nothing."""
    from django.core.cache import cache

    try:
        if cache.add(BEAT_LOCK_KEY, beat_owner(), BEAT_LOCK_SECONDS):
            atexit.register(release_beat_lock)
            return
        holder = cache.get(BEAT_LOCK_KEY)
    except Exception as exc:  # no shared cache: nothing to coordinate with
        logging.getLogger(__name__).warning("beat lock not taken: %s", exc)
        return
    message = (
        f"Another beat is running ({holder}); one beat serves the whole portal. "
        f"Stop it first, or wait {BEAT_LOCK_SECONDS} s if it was killed."
    )
    logging.getLogger(__name__).error(message)
    raise SystemExit(message)


def release_beat_lock() -> None:
    from django.core.cache import cache

    if cache.get(BEAT_LOCK_KEY) == beat_owner():
        cache.delete(BEAT_LOCK_KEY)


def beat_heartbeat() -> None:
    """Stamp beat's Heartbeat row and keep its lock, at most every few seconds; never fails
    a send."""
    from django.core.cache import cache
    from django.utils import timezone

    from mlops_portal.models import Heartbeat

    if time.monotonic() - _beat["written"] < BEAT_HEARTBEAT_EVERY:
        return
    try:
        if cache.get(BEAT_LOCK_KEY) in (beat_owner(), None):
            cache.set(BEAT_LOCK_KEY, beat_owner(), BEAT_LOCK_SECONDS)
    except Exception as exc:  # the cache is away; the heartbeat row still counts
        logging.getLogger(__name__).warning("beat lock not refreshed: %s", exc)
    try:
        Heartbeat.objects.update_or_create(
            name="beat", defaults={"at": timezone.now(), "host": socket.gethostname()}
        )
        _beat["written"] = time.monotonic()
    except Exception as exc:  # the database is away: /readyz will say beat is late
        logging.getLogger(__name__).warning("beat heartbeat not written: %s", exc)


_running: dict[str, tuple[float, object]] = {}  # task id -> (start, request id token)


@task_prerun.connect
def start_job(task_id=None, task=None, **kwargs):
    """Bind the job's request id for its log lines (and the jobs it sends), note its start."""
    request_id = getattr(task.request, logs.JOB_REQUEST_ID_HEADER, None) if task else None
    token = logs.bind_request_id(request_id or task_id)
    _running[task_id] = (time.monotonic(), token)


@task_postrun.connect
def end_job(task_id=None, task=None, state=None, **kwargs):
    """Count every finished job by task and outcome (success, failure, retry…) with its
    duration, for /metrics (mlops_portal.core.metrics); unbind its request id."""
    started, token = _running.pop(task_id, (None, None))
    if token is not None:
        logs.reset_request_id(token)
    if task is None or started is None:
        return
    metrics.record_job(task.name, (state or "unknown").lower(), time.monotonic() - started)
