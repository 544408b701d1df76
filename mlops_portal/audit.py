"""Change records with django-auditlog (chosen over django-simple-history because one
LogEntry table with old → new per field gives the global change feed directly, and over
django-pghistory because triggers need PostgreSQL while `make run` uses SQLite).

Saves through the ORM are recorded by auditlog's signals. State changes that services
make with a conditional UPDATE (no signal) record themselves with `record_update`.
Secrets never reach a record: target settings are excluded and logged masked."""

from auditlog.context import auditlog_value
from auditlog.models import LogEntry
from auditlog.registry import auditlog

# Fields that change on every probe or heartbeat are bookkeeping, not changes people make.
REGISTRY = {
    "deployments.RegisteredModel": {"exclude_fields": ["updated_at"]},
    "deployments.ModelVersion": {
        "exclude_fields": ["updated_at", "validation_started_at", "validation_attempts"]
    },
    "deployments.Target": {"exclude_fields": ["updated_at", "backend_settings"]},
    "deployments.Deployment": {
        "exclude_fields": ["updated_at", "lease_expires_at", "backend_state", "attempts"]
    },
    "monitoring.HealthCheck": {
        "exclude_fields": [
            "updated_at",
            "state",
            "consecutive_failures",
            "first_failure_at",
            "last_probe_at",
            "last_ok",
            "last_latency_ms",
            "last_error",
            "next_due_at",
            "claim_token",
        ]
    },
    "monitoring.Incident": {"exclude_fields": ["updated_at"]},
    "docs_app.Page": {"exclude_fields": ["updated_at", "body"]},
}
KINDS = {label.lower(): label for label in REGISTRY}


def register_models() -> None:
    from django.apps import apps

    for label, options in REGISTRY.items():
        auditlog.register(apps.get_model(label), **options)


def record_update(instance, actor, changes: dict) -> LogEntry | None:
    """Record a change made without save(): `changes` maps field → (old, new)."""
    if not changes:
        return None
    return LogEntry.objects.log_create(
        instance,
        action=LogEntry.Action.UPDATE,
        changes={field: [str(old), str(new)] for field, (old, new) in changes.items()},
        actor=actor if getattr(actor, "is_authenticated", False) else None,
    )


def attribute_changes_to(user) -> None:
    """API tokens authenticate inside DRF, after auditlog's middleware read request.user:
    name the token's user as the actor of this request's records."""
    try:
        auditlog_value.get()["actor"] = user
    except LookupError:
        pass  # outside a request (tasks, shell): records carry no actor
