"""Reachability of the services the portal needs, for /healthz and start-up checks, and the
state of every component for /readyz."""

import functools
import json
import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Min
from django.utils import timezone

from mlops_portal.celery import app as celery_app
from mlops_portal.core.metrics import SENT_AT_HEADER


def database_status() -> str:
    """'ok', or the error that stopped a trivial query."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver error means "not reachable" here
        return f"error: {exc}"
    return "ok"


def broker_status() -> str:
    """'ok', or the error that stopped a connection to the Celery broker."""
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
    except Exception as exc:  # kombu raises transport-specific errors
        return f"error: {exc}"
    return "ok"


def broker_kind(url: str) -> str:
    return url.split("://", 1)[0] or "unknown"


# --- readiness (/readyz): every component, each with a status -----------------------------


def readiness() -> tuple[bool, dict]:
    """(all green, {component: {"status": "ok" | "failing", …details, "ms"}}) for /readyz:
    the database and broker, a live consumer on every queue, when beat last ran, the outbox
    lag, unapplied migrations. Each check is timed; a check that raises is failing."""
    checks = {}
    for name, check in (
        ("database", _database),
        ("broker", _broker),
        ("migrations", migrations_status),
        ("queues", queues_status),
        ("beat", beat_status),
        ("outbox", outbox_status),
    ):
        started = time.perf_counter()
        try:
            checks[name] = check()
        except Exception as exc:  # a component we cannot even ask is not ready
            checks[name] = {"status": FAILING, "error": f"{exc.__class__.__name__}: {exc}"}
        checks[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return all(check["status"] == OK for check in checks.values()), checks


OK, FAILING = "ok", "failing"


def _status(healthy: bool) -> str:
    return OK if healthy else FAILING


def _database() -> dict:
    error = database_status()
    return {"status": _status(error == "ok")} | ({} if error == "ok" else {"error": error})


def _broker() -> dict:
    error = broker_status()
    return {"status": _status(error == "ok")} | ({} if error == "ok" else {"error": error})


def migrations_status() -> dict:
    """Failing while a migration of the code is not applied to the database."""
    from django.db.migrations.loader import MigrationLoader

    # Every node of the graph, not a plan to the leaves: a plan skips a gap below an applied
    # leaf (a migration added by a merge, applied out of order, or rolled back by hand).
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    unapplied = sorted(
        f"{app}.{name}"
        for app, name in loader.graph.nodes
        if (app, name) not in loader.applied_migrations
    )
    return {"status": _status(not unapplied), "unapplied": unapplied}


def queue_names() -> list[str]:
    """Every queue a job can be routed to."""
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    return sorted(routed | {settings.CELERY_TASK_DEFAULT_QUEUE})


def queues_status() -> dict:
    """Which workers consume each queue, asked of the workers themselves (remote control,
    READYZ_WORKER_TIMEOUT_MS for their answers); failing when a queue has none."""
    timeout = settings.READYZ_WORKER_TIMEOUT_MS / 1000
    answers = celery_app.control.inspect(timeout=timeout).active_queues() or {}
    consumers = {name: [] for name in queue_names()}
    for node, queues in sorted(answers.items()):
        for queue in queues:
            consumers.setdefault(queue["name"], []).append(node)
    without = [name for name, nodes in consumers.items() if not nodes]
    return {"status": _status(not without), "consumers": consumers, "without_consumer": without}


def beat_status() -> dict:
    """When beat last sent a scheduled job; failing after READYZ_BEAT_MAX_AGE_SECONDS."""
    from mlops_portal.models import Heartbeat

    beat = Heartbeat.objects.filter(name="beat").first()
    if beat is None:
        return {"status": FAILING, "last_ran_at": None, "age_seconds": None}
    age = (timezone.now() - beat.at).total_seconds()
    return {
        "status": _status(age <= settings.READYZ_BEAT_MAX_AGE_SECONDS),
        "last_ran_at": beat.at.isoformat(),
        "age_seconds": round(age, 1),
        "host": beat.host,
    }


def outbox_status() -> dict:
    """Jobs not yet handed to the broker, and how long the oldest has waited; failing after
    READYZ_OUTBOX_MAX_AGE_SECONDS (the broker or the relay is down)."""
    from mlops_portal.models import OutboxMessage

    pending = OutboxMessage.objects.filter(published_at__isnull=True).aggregate(
        n=Count("pk"), oldest=Min("created_at")
    )
    lag = (timezone.now() - pending["oldest"]).total_seconds() if pending["oldest"] else 0.0
    return {
        "status": _status(lag <= settings.READYZ_OUTBOX_MAX_AGE_SECONDS),
        "pending": pending["n"],
        "lag_seconds": round(lag, 1),
    }


def queue_state() -> dict[str, tuple[int, float]]:
    """{queue: (waiting jobs, seconds the oldest has waited)}; {} without a Redis broker.

    Kombu's Redis transport keeps a queue as a list, pushed on the left and popped on the
    right, so the oldest message is the last element."""
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        return {}
    names = queue_names()
    pipe = _broker_redis(settings.CELERY_BROKER_URL).pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
        pipe.lindex(name, -1)
    answers = pipe.execute()
    now = time.time()
    state = {}
    for index, name in enumerate(names):
        length, last = answers[2 * index], answers[2 * index + 1]
        state[name] = (length, max(0.0, now - sent_at(last)) if last else 0.0)
    return state


@functools.cache
def _broker_redis(url):
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


def sent_at(raw: bytes) -> float:
    try:
        return float(json.loads(raw)["headers"][SENT_AT_HEADER])
    except (ValueError, KeyError, TypeError):
        return time.time()  # published by something else: age unknown, counted as new


# --- the banner engineers see (mlops_portal.context_processors.operations) ----------------

WARNINGS_CACHE_KEY = "ops:warnings"
WARNINGS_CACHE_SECONDS = 15


def operations_warnings() -> list[str]:
    """What an engineer should know at once: beat is late, or jobs wait in a queue that no
    worker takes (the usual reason a deploy waits forever). Cheap enough for every page (a
    query and one Redis round trip) and cached for WARNINGS_CACHE_SECONDS besides."""
    warnings = cache.get(WARNINGS_CACHE_KEY)
    if warnings is None:
        warnings = _beat_warnings() + _queue_warnings()
        cache.set(WARNINGS_CACHE_KEY, warnings, WARNINGS_CACHE_SECONDS)
    return warnings


def _beat_warnings() -> list[str]:
    beat = beat_status()
    if beat["status"] == OK:
        return []
    if beat["last_ran_at"] is None:
        return ["Beat has never run: probes, reconciliation and digests are not scheduled."]
    minutes = int(beat["age_seconds"] // 60)
    return [
        f"Beat last ran {minutes} min ago: probes, reconciliation and digests are not "
        "scheduled. Is the beat process running?"
    ]


def _queue_warnings() -> list[str]:
    try:
        state = queue_state()
    except Exception as exc:  # the broker is down: /healthz and the outbox say so too
        return [f"The broker does not answer ({exc.__class__.__name__}): jobs wait in the outbox."]
    limit = settings.OPS_QUEUE_WAIT_WARNING_SECONDS
    return [
        f"{length} job(s) in queue {name!r} have waited {int(waited)} s and no worker has "
        f"taken them: is a worker consuming {name!r} running?"
        for name, (length, waited) in state.items()
        if length and waited > limit
    ]
