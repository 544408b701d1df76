"""Deploy targets: created and changed by MLOps engineers."""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from deployments.backends import backend_class, public_settings
from deployments.choices import Backend, Environment, QueuePolicy
from deployments.models import Target
from mlops_portal.core import audit
from mlops_portal.core.policy import require
from mlops_portal.core.validation import field_errors

EDITABLE_FIELDS = (
    "environment",
    "requires_approval",
    "rollback_skips_approval",
    "auto_rollback",
    "verification_window_seconds",
    "queue_policy",
    "description",
)


def create_target(actor, *, name, environment, backend=Backend.LOCAL, backend_settings=None,
                  requires_approval=None, rollback_skips_approval=False, auto_rollback=False,
                  verification_window_seconds=60, queue_policy=QueuePolicy.SUPERSEDE,
                  description="") -> Target:  # fmt: skip
    """Create a target; production targets require approval unless told otherwise."""
    require(actor, "target.manage")
    if requires_approval is None:
        requires_approval = environment == Environment.PRODUCTION
    target = Target(
        name=(name or "").strip().lower(),
        environment=environment,
        backend=backend,
        requires_approval=requires_approval,
        rollback_skips_approval=rollback_skips_approval,
        auto_rollback=auto_rollback,
        verification_window_seconds=verification_window_seconds,
        queue_policy=queue_policy,
        description=description,
        created_by=actor,
    )
    errors = field_errors(target, exclude=["created_by", "backend_settings"])
    if target.name == "new":
        errors.setdefault("name", []).append("'new' is reserved by the portal's pages.")
    elif Target.objects.filter(name=target.name).exists():
        errors.setdefault("name", []).append(f"A target named {target.name!r} already exists.")
    target.backend_settings = _clean_backend_settings(backend, backend_settings or {}, {}, errors)
    if errors:
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            target.save()
    except IntegrityError:  # created by someone else a moment ago
        raise ValidationError({"name": [f"A target named {target.name!r} exists."]}) from None
    return target


def update_target(actor, target: Target, *, backend_settings=None, **changes) -> Target:
    """Change a target's settings; its name and backend stay (deployments refer to them)."""
    require(actor, "target.manage", target)
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError({name: ["This field cannot be changed."] for name in unknown})
    for name, value in changes.items():
        setattr(target, name, value)
    errors = field_errors(target, exclude=["created_by", "backend_settings"])
    before = public_settings(target.backend, target.backend_settings)
    if backend_settings is not None:
        target.backend_settings = _clean_backend_settings(
            target.backend, backend_settings, target.backend_settings, errors
        )
    if errors:
        raise ValidationError(errors)
    after = public_settings(target.backend, target.backend_settings)
    with transaction.atomic():
        target.save()
        if before != after:  # excluded from auditlog; recorded here with secrets masked
            audit.record_update(target, actor, {"backend_settings": (before, after)})
    return target


def _clean_backend_settings(backend, raw, previous, errors) -> dict:
    try:
        return backend_class(backend).clean_settings(raw, previous)
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, []).extend(messages)
        return {}
