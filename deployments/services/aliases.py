"""Aliases and stages: the names that point at a version of a model.

An alias ("champion") names one version of its model and moves when it is set again; a
deploy request may name a version by its alias, resolved when the request is made. The
stage (None, Staging, Production; "Archived" is the version's `archived` flag) is MLflow's
older, deprecated label: the portal keeps and shows it, and nothing deploys by it."""

import re

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from deployments.choices import Stage, VersionEventKind
from deployments.models import ModelAlias, ModelVersion, RegisteredModel, VersionEvent
from mlops_portal.core.policy import require

ALIAS_PATTERN = re.compile(r"^[\w\-]+$")
VERSION_LIKE_ALIAS = re.compile(r"^[vV]\d+$")
ARCHIVED = "archived"


def check_alias_name(alias) -> str:
    """Return `alias` when MLflow would accept it as a new alias; ValidationError otherwise."""
    if not isinstance(alias, str) or not alias:
        raise ValidationError({"alias": ["Registered model alias name cannot be empty."]})
    if not ALIAS_PATTERN.match(alias) or len(alias) > 255:
        raise ValidationError(
            {
                "alias": [
                    f"Invalid alias name: {alias!r}. Use at most 255 letters, digits, "
                    "underscores (_) and dashes (-)."
                ]
            }
        )
    if alias.lower() == "latest":
        raise ValidationError({"alias": ["'latest' alias name (case insensitive) is reserved."]})
    if VERSION_LIKE_ALIAS.match(alias):
        raise ValidationError({"alias": [f"Version alias name {alias!r} is reserved."]})
    return alias


def set_alias(actor, model: RegisteredModel, alias: str, number: int) -> ModelAlias:
    """Point `alias` of `model` at its version `number` (moving it if it pointed elsewhere);
    return the alias. Raises ModelVersion.DoesNotExist when the model has no such version."""
    require(actor, "alias.set", model)
    check_alias_name(alias)
    version = model.versions.get(number=number)
    with transaction.atomic():
        found = ModelAlias.objects.select_for_update().select_related("version")
        current = found.filter(model=model, alias=alias).first()
        if current is not None and current.version_id == version.pk:
            return current
        was = f" (was v{current.version.number})" if current else ""
        current = current or ModelAlias(model=model, alias=alias)
        current.version, current.updated_by = version, actor
        try:
            with transaction.atomic():
                current.save()
        except IntegrityError:  # a concurrent call created it after our SELECT: move theirs
            current = found.get(model=model, alias=alias)
            current.version, current.updated_by = version, actor
            current.save()
        _record(version, VersionEventKind.ALIAS_SET, actor, f"Alias @{alias} set{was}.")
    return current


def delete_alias(actor, model: RegisteredModel, alias: str) -> None:
    """Remove `alias` from `model`; removing one that is not there changes nothing."""
    require(actor, "alias.set", model)
    with transaction.atomic():
        found = ModelAlias.objects.select_related("version").filter(model=model, alias=alias)
        for row in found:
            _record(row.version, VersionEventKind.ALIAS_REMOVED, actor, f"Alias @{alias} removed.")
            row.delete()


def version_for_alias(model_name: str, alias: str) -> ModelVersion:
    """The version `alias` names; ModelAlias.DoesNotExist when the model has no such alias."""
    return (
        ModelAlias.objects.select_related("version__model")
        .get(model__name=model_name, alias=alias)
        .version
    )


def transition_stage(actor, version: ModelVersion, stage: str, archive_existing=False):
    """Move `version` to `stage` (a Stage value or "archived"); with `archive_existing`,
    archive the model's other versions in that stage. Return the version."""
    require(actor, "version.edit", version)
    if stage not in (*Stage.values, ARCHIVED):
        raise ValidationError({"stage": [f"Choose one of: {', '.join(Stage.labels)}, Archived."]})
    if archive_existing and stage not in (Stage.STAGING, Stage.PRODUCTION):
        raise ValidationError(
            {"archive_existing_versions": ["Only Staging and Production archive the others."]}
        )
    with transaction.atomic():
        if archive_existing:
            _archive_others(actor, version, stage)
        label = "Archived" if stage == ARCHIVED else Stage(stage).label
        version.archived = stage == ARCHIVED
        if stage != ARCHIVED:
            version.stage = stage
        version.save(update_fields=["stage", "archived", "updated_at"])
        _record(version, VersionEventKind.STAGE_CHANGED, actor, f"Stage: {label}.")
        RegisteredModel.objects.filter(pk=version.model_id).update(updated_at=timezone.now())
    return version


def _archive_others(actor, version, stage) -> None:
    others = version.model.versions.filter(stage=stage, archived=False).exclude(pk=version.pk)
    for other in others:
        other.archived = True
        other.save(update_fields=["archived", "updated_at"])
        _record(
            other, VersionEventKind.STAGE_CHANGED, actor, f"Archived: v{version.number} moved in."
        )


def _record(version, kind, actor, message) -> VersionEvent:
    return VersionEvent.objects.create(version=version, kind=kind, actor=actor, message=message)
