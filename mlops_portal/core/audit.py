"""Change records with django-auditlog (chosen over django-simple-history because one
LogEntry table with old → new per field gives the global change feed directly, and over
django-pghistory because triggers need PostgreSQL while `make run` uses SQLite).

Saves through the ORM are recorded by auditlog's signals. State changes that services
make with a conditional UPDATE (no signal) record themselves with `record_update`, and rows
inserted without save() (`mlops_portal.core.inserts`) with `creation_record`.
Secrets never reach a record: target settings are excluded and logged masked."""

import functools
import json
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from auditlog.cid import get_cid
from auditlog.diff import get_field_value, model_instance_diff, track_field
from auditlog.models import LogEntry
from auditlog.registry import auditlog
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db.models import DateTimeField, JSONField
from django.db.models.signals import pre_save
from django.utils import timezone
from django.utils.encoding import smart_str
from django.utils.functional import Promise

_current_request = ContextVar("audited_request", default=None)
_current_actor = ContextVar("audited_actor", default=None)

# Fields that change on every probe or heartbeat are bookkeeping, not changes people make.
REGISTRY = {
    "deployments.RegisteredModel": {"exclude_fields": ["updated_at"], "m2m_fields": ["followers"]},
    "deployments.ModelVersion": {
        "exclude_fields": ["updated_at", "validation_started_at", "validation_attempts"]
    },
    "deployments.ModelAlias": {"exclude_fields": ["updated_at"]},
    "deployments.Target": {
        "exclude_fields": ["updated_at", "backend_settings"],
        "m2m_fields": ["followers"],
    },
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
            "last_ping_at",
            "last_start_at",
            "ping_deadline",
        ]
    },
    "monitoring.Incident": {"exclude_fields": ["updated_at"]},
    # Alert rules: their condition, severity and mutes (with the reason); not what each
    # evaluation finds.
    "monitoring.AlertRule": {
        "exclude_fields": ["state", "firing_since", "last_evaluated_at", "last_value"]
    },
    "docs_app.Page": {
        "exclude_fields": ["updated_at", "body"],
        "m2m_fields": ["linked_models", "linked_targets"],
    },
    # A chat webhook's URL is its credential, like the secret.
    "mlops_portal.NotificationChannel": {"exclude_fields": ["updated_at", "secret", "url"]},
    # Tokens: created and revoked, with the prefix users see in their token list; never
    # the secret (not stored) nor its digest.
    "mlops_portal.ApiToken": {"exclude_fields": ["digest", "last_used_at"]},
    # Roles are groups: who was given or lost which one. Never the password hash.
    "auth.User": {"exclude_fields": ["password", "last_login"], "m2m_fields": ["groups"]},
}
KINDS = {label.lower(): label for label in REGISTRY}


def register_models() -> None:
    from django.apps import apps

    for label, options in REGISTRY.items():
        model = apps.get_model(label)
        # Own columns only: reverse relations would show up as "None → <manager>" noise.
        fields = [f.name for f in model._meta.concrete_fields if f.name not in
                  options["exclude_fields"] and not f.primary_key]  # fmt: skip
        auditlog.register(model, include_fields=fields, **options)
    pre_save.connect(name_the_actor, sender=LogEntry, dispatch_uid="portal-audit-actor")


class AuditActorMiddleware:
    """Make the request's user the actor of the change records written while it runs.

    Replaces auditlog's middleware, which reads request.user before DRF authenticates API
    tokens and connects a signal receiver on every request; here the user is read when a
    record is saved, by one receiver connected once."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(token)


@contextmanager
def acting_as(user):
    """Name `user` as the actor of records written outside a request (commands, scripts)."""
    token = _current_actor.set(user)
    try:
        yield
    finally:
        _current_actor.reset(token)


def name_the_actor(sender, instance, **kwargs):
    if instance.actor_id is not None:
        return
    user = getattr(_current_request.get(), "user", None) or _current_actor.get()
    if user is not None and user.is_authenticated:
        instance.actor = user
        instance.actor_email = user.email


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


def creation_record(instance, actor) -> LogEntry:
    """The unsaved record auditlog's post_save would write for `instance`, a new row inserted
    without save() (`mlops_portal.core.inserts` links its object_pk and object_id). Its
    `auto_now` fields are stamped first, as save() would, so the record shows what is written.
    """
    now = timezone.now()
    for field in instance._meta.concrete_fields:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            setattr(instance, field.attname, now)
    changes = _creation_changes(instance)
    known = actor if getattr(actor, "is_authenticated", False) else None
    return LogEntry(
        content_type=ContentType.objects.get_for_model(instance),
        object_repr=str(instance),
        serialized_data=LogEntry.objects._get_serialized_data_or_none(instance),
        action=LogEntry.Action.CREATE,
        changes=changes,
        cid=get_cid(),
        actor=known,
        actor_email=known.email if known else None,
        timestamp=now,
    )


def _creation_changes(instance) -> dict:
    """What auditlog's `model_instance_diff(None, instance)` gives, every tracked field from
    "None" to its value as auditlog writes it, with the fields to look at worked out once per
    model instead of on every call (a third of its cost), and the usual values written here
    as auditlog's `get_field_value` writes them (its checks per field cost as much again)."""
    masked = _tracked_fields(type(instance))[1]
    as_json = settings.AUDITLOG_STORE_JSON_CHANGES
    if masked or as_json:  # auditlog's own diff, as it is
        return model_instance_diff(None, instance, use_json_for_changes=as_json)
    # Other settings change how auditlog writes times and keys: all through auditlog then.
    quick = settings.USE_TZ and not settings.AUDITLOG_USE_FK_STRING_REPRESENTATION
    changes = {}
    for field, kind in _field_kinds(type(instance)):
        text = _field_text(instance, field, kind) if quick else UNKNOWN
        if text is UNKNOWN:
            text = get_field_value(instance, field)
        if text != "None":  # the "old" value of a new row, as auditlog compares it
            changes[field.name] = ("None", smart_str(text))
    return changes


UNKNOWN = object()  # _field_text leaves this value to auditlog
SORTED_JSON = json.JSONEncoder(sort_keys=True)


def _field_text(instance, field, kind):
    """What `get_field_value` returns for this field's value, or UNKNOWN."""
    if not kind:
        return UNKNOWN
    value = getattr(instance, field.attname)
    kind_of_value = type(value)
    if kind == "plain":  # smart_str: str() of anything but bytes and lazy texts
        if kind_of_value is str:
            return value
        return UNKNOWN if isinstance(value, (bytes, Promise)) else str(value)
    if kind == "key":  # the id as it is (None stays None)
        return str(value) if kind_of_value is int else None if value is None else UNKNOWN
    if kind == "time":  # naive UTC (None stays None)
        if kind_of_value is datetime and value.tzinfo is not None:
            return str(value.astimezone(UTC).replace(tzinfo=None))
        return None if value is None else UNKNOWN
    if kind_of_value in (dict, list):  # "json"
        try:
            if field.encoder is None:  # json.dumps(value, sort_keys=True), its encoder kept
                return SORTED_JSON.encode(value)
            return json.dumps(value, sort_keys=True, cls=field.encoder)
        except TypeError:
            return UNKNOWN
    return UNKNOWN


@functools.cache
def _field_kinds(model) -> tuple:
    """(field, its kind) for `_creation_changes`, by how auditlog's `get_field_value` reads
    it: "json" (sorted JSON text), "time" (naive UTC), "key" (a foreign key's id), "plain"
    (any other field read by its name: its text), "" (the rest, reverse relations among
    them: through auditlog)."""
    kinds = []
    for field in _tracked_fields(model)[0]:
        if isinstance(field, JSONField):
            kind = "json"
        elif isinstance(field, DateTimeField):
            kind = "time"
        elif (field.one_to_one or field.many_to_one) and hasattr(field, "rel_class"):
            kind = "key"
        else:
            kind = "plain" if getattr(field, "attname", None) == field.name else ""
        kinds.append((field, kind))
    return tuple(kinds)


@functools.cache
def _tracked_fields(model) -> tuple[tuple, bool]:
    """The fields auditlog diffs for `model`, as model_instance_diff chooses them, and
    whether it masks any of them."""
    options = auditlog.get_model_fields(model)
    fields = [field for field in model._meta.get_fields() if track_field(field)]
    if options["include_fields"]:
        fields = [field for field in fields if field.name in options["include_fields"]]
    fields = [field for field in fields if field.name not in options["exclude_fields"]]
    return tuple(fields), bool(options["mask_fields"])
