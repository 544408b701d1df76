"""Reachability of the services the portal needs, for /healthz and start-up checks, and the
state of every component for /readyz."""

import time

from django.conf import settings
from django.db import connection
from django.db.models import Count, Min
from django.utils import timezone

from mlops_portal.celery import app as celery_app


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
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    unapplied = [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
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
