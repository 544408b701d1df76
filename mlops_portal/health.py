"""Reachability of the services the portal needs, for /healthz and start-up checks."""

from django.db import connection

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
