"""Every state change of the model registry. Forms, the API and tasks call these functions;
each checks permission, validates, writes its event row and enqueues work on commit."""

import hashlib
import math
import re
import tempfile
from datetime import timedelta
from pathlib import Path

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from deployments import archives, artifacts, reference, sources
from deployments.choices import Flavor, VersionEventKind, VersionStatus
from deployments.models import ModelVersion, RegisteredModel, VersionEvent
from deployments.serving import mlflow_model
from deployments.serving.loading import (
    ArtifactError,
    InputError,
    check_instances,
    check_rows,
    load_model,
    predict,
)
from mlops_portal.core import audit, events, inserts, outbox
from mlops_portal.core.compiled import InstanceReader
from mlops_portal.core.policy import require
from mlops_portal.core.validation import clean_tags, field_errors

ARTIFACT_EXTENSIONS = (".joblib", ".pkl", ".pickle", *archives.ARCHIVE_SUFFIXES)
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
RESERVED_MODEL_NAMES = {"new"}  # /models/new/ is the create page
# MLflow's tag keys: letters, digits, _ - . : / and spaces, never a path going up or rooted.
TAG_KEY_PATTERN = re.compile(r"^(?!/)(?!.*(?:^|/)\.\.?(?:/|$))[/\w.\- :]+$")

FLAVORS = frozenset(Flavor.values)  # Flavor.values makes its list anew on every read
# The model row `_claim_next_number` reads back from its UPDATE.
MODEL_ROW = InstanceReader(RegisteredModel)


# --- models -------------------------------------------------------------------------------


def create_model(
    actor, *, name, description="", team="", tags=(), mlflow_tags=None
) -> RegisteredModel:
    """Register a new model name owned by `actor`; return it."""
    require(actor, "model.create")
    name = (name or "").strip().lower()
    model = RegisteredModel(name=name, description=description, owner=actor, team=team.strip())
    errors = field_errors(model, exclude=["owner", "latest_version_number", "tags"])
    model.tags = clean_tags(tags, errors)
    model.mlflow_tags = clean_key_values(mlflow_tags or {}, errors)
    if name in RESERVED_MODEL_NAMES:
        errors.setdefault("name", []).append(f"{name!r} is reserved by the portal's pages.")
    elif RegisteredModel.objects.filter(name=name).exists():
        errors.setdefault("name", []).append(f"A model named {name!r} already exists.")
    if errors:
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            model.save()
    except IntegrityError:  # registered by someone else a moment ago
        raise ValidationError({"name": [f"A model named {name!r} already exists."]}) from None
    return model


def update_model(actor, model: RegisteredModel, *, description=None, team=None, tags=None):
    """Change the description, team or tags of `model`; the name never changes."""
    require(actor, "model.edit", model)
    if description is not None:
        model.description = description
    if team is not None:
        model.team = team.strip()
    errors = field_errors(model, exclude=["owner", "latest_version_number", "name", "tags"])
    if tags is not None:
        model.tags = clean_tags(tags, errors)
    if errors:
        raise ValidationError(errors)
    model.save()
    return model


def rename_model(actor, model: RegisteredModel, new_name: str) -> RegisteredModel:
    """Give `model` a new name (its versions, aliases and deployments follow); return it."""
    require(actor, "model.edit", model)
    new_name = (new_name or "").strip()
    model.name = new_name
    errors = field_errors(model, exclude=["owner", "latest_version_number", "tags"])
    if new_name in RESERVED_MODEL_NAMES:
        errors.setdefault("name", []).append(f"{new_name!r} is reserved by the portal's pages.")
    if errors:
        model.refresh_from_db(fields=["name"])
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            model.save(update_fields=["name", "updated_at"])
    except IntegrityError:
        model.refresh_from_db(fields=["name"])
        raise ValidationError({"name": [f"A model named {new_name!r} already exists."]}) from None
    return model


def delete_model(actor, model: RegisteredModel) -> None:
    """Delete `model` with its versions and aliases. Refused (ValidationError) when a
    version was ever deployed: deployment history stays whole."""
    require(actor, "model.delete", model)
    if model.versions.filter(deployments__isnull=False).exists():
        raise ValidationError(
            {"name": [f"Versions of {model.name!r} have deployments; archive them instead."]}
        )
    with transaction.atomic():
        model.delete()


def set_key_value_tag(actor, obj, key: str, value: str, *, remove=False):
    """Set (or with `remove`, delete) MLflow key/value tag `key` on a model or a version;
    return the object. Deleting a tag that is not there changes nothing."""
    if isinstance(obj, ModelVersion):
        require(actor, "version.edit", obj)
    else:
        require(actor, "model.edit", obj)
    errors: dict[str, list[str]] = {}
    tags = dict(obj.mlflow_tags)
    if remove:
        tags.pop(key, None)
    else:
        tags.update(clean_key_values({key: value}, errors))
    if errors:
        raise ValidationError(errors)
    if tags == obj.mlflow_tags:
        return obj
    obj.mlflow_tags = tags
    with transaction.atomic():
        obj.save(update_fields=["mlflow_tags", "updated_at"])
        if isinstance(obj, ModelVersion):
            _record(
                obj,
                VersionEventKind.EDITED,
                actor,
                f"Tag {key!r} {'removed' if remove else 'set'}.",
            )
    return obj


def clean_key_values(tags, errors) -> dict[str, str]:
    """MLflow tags as a dict of str to str; note an error for keys MLflow would refuse."""
    if not isinstance(tags, dict):
        errors.setdefault("tags", []).append('Give an object of keys to texts: {"team": "x"}.')
        return {}
    cleaned = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not TAG_KEY_PATTERN.match(key) or len(key) > 250:
            errors.setdefault("tags", []).append(
                f"Invalid tag key {key!r}: use at most 250 letters, digits, _ - . : / or spaces."
            )
        elif not isinstance(value, str) or len(value) > 5000:
            errors.setdefault("tags", []).append(f"Tag {key!r} needs a text of at most 5000.")
        else:
            cleaned[key] = value
    return cleaned


# --- versions -----------------------------------------------------------------------------


def register_version(
    actor,
    model_name: str,
    *,
    artifact=None,
    artifact_uri="",
    artifact_sha256="",
    flavor="",
    metrics=None,
    params=None,
    source_url="",
    description="",
    sample_input=None,
    reference_data=None,
    tags=(),
    mlflow_tags=None,
    run_id="",
) -> ModelVersion:
    """Register the next version of the model named `model_name` and queue its validation;
    return the version. Raises RegisteredModel.DoesNotExist when no model has that name.

    The number comes from an UPDATE on the model row that also reads the row, so two
    concurrent registrations never share a number (the unique constraint backs this up).

    `flavor` empty: detected from the artifact (an archive or an MLflow URI is an MLflow
    model); validation settles it from the files. Without `sample_input` (MLflow clients
    send none) validation predicts on an MLflow model's own input example, or only loads
    the model when it has none.

    `reference_data` (an upload, CSV or Parquet): the rows live inputs are compared with
    for drift; its columns must be the model's (`deployments.reference`)."""
    require(actor, "version.register")
    artifact_sha256 = (artifact_sha256 or "").strip().lower()
    errors: dict[str, list[str]] = {}
    _check_artifact(artifact, artifact_uri, artifact_sha256, errors)
    _check_metrics(metrics or {}, errors)
    _check_json_object("params", params or {}, errors)
    if not flavor:
        filename = artifact.name if artifact is not None else ""
        is_mlflow = sources.looks_like_mlflow_model((artifact_uri or "").strip(), filename)
        flavor = Flavor.MLFLOW if is_mlflow else Flavor.SKLEARN
    if len(run_id or "") > 100:
        errors.setdefault("run_id", []).append("Use at most 100 characters.")
    key_values = clean_key_values(mlflow_tags or {}, errors)
    if flavor not in FLAVORS:
        errors.setdefault("flavor", []).append(f"Choose one of: {', '.join(Flavor.values)}.")
    # None: nothing given (MLflow clients); an empty list is an error except for an MLflow
    # model, whose own input example stands in.
    if sample_input is not None and (flavor != Flavor.MLFLOW or sample_input != []):
        _check_sample_input(sample_input, flavor, errors)
    if source_url and len(source_url) > 500:
        errors.setdefault("source_url", []).append("Use at most 500 characters.")
    tag_names = clean_tags(tags, errors)
    upload_digest = _check_upload_digest(artifact, artifact_sha256, errors)
    _check_reference_data(reference_data, sample_input, errors)
    if errors:
        raise ValidationError(errors)

    with transaction.atomic():
        model = _claim_next_number(model_name)
        require(actor, "version.register", model)  # the owner's, read in the same statement
        version = ModelVersion(
            model=model,
            number=model.latest_version_number,
            artifact_uri=artifact_uri.strip(),
            artifact_sha256=artifact_sha256,
            flavor=flavor,
            metrics=metrics or {},
            params=params or {},
            source_url=source_url.strip(),
            description=description,
            sample_input=sample_input or [],
            tags=tag_names,
            mlflow_tags=key_values,
            run_id=(run_id or "").strip(),
            registered_by=actor,
        )
        if artifact is not None:
            version.artifact_sha256, version.artifact_size = upload_digest
            version.artifact.save(
                f"{model.name}-v{version.number}-{artifact.name}", artifact, save=False
            )
        if reference_data is not None:
            version.reference_data.save(
                f"{model.name}-v{version.number}-{reference_data.name}", reference_data,
                save=False,
            )  # fmt: skip
        _insert_registration(version, actor)
        events.publish("version.registered", version=version)
    return version


def _insert_registration(version: ModelVersion, actor) -> None:
    """Write the version, its event, its change record and its validation job's outbox row
    in one statement (the hot write of the registry: see mlops_portal.core.inserts), and
    publish the job once the transaction commits."""
    from deployments.tasks import validate_version_task

    event = VersionEvent(kind=VersionEventKind.REGISTERED, actor=actor,
                         message=f"Registered by {actor}.")  # fmt: skip
    record = audit.creation_record(version, actor)
    [job] = outbox.new_jobs(validate_version_task, [()])  # its argument: the version's id
    inserts.insert_family(
        version,
        [
            inserts.Child(event, {"version_id": "id"}),
            inserts.Child(record, {"object_id": "id", "object_pk": "text"}),
            inserts.Child(job, {"args": "list"}),
        ],
    )
    outbox.publish_on_commit([job])


def update_version(actor, version: ModelVersion, *, description=None, tags=None):
    """Change the mutable fields of a version (description, tags); everything else is frozen."""
    require(actor, "version.edit", version)
    errors: dict[str, list[str]] = {}
    if tags is not None:
        version.tags = clean_tags(tags, errors)
    if description is not None:
        version.description = description
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        version.save(update_fields=["description", "tags", "updated_at"])
        _record(version, VersionEventKind.EDITED, actor, "Description or tags edited.")
    return version


def delete_version(actor, version: ModelVersion) -> None:
    """Delete `version` and its aliases. Refused (ValidationError) once it was deployed.
    Its number is never handed out again (the model's counter only goes up)."""
    require(actor, "version.delete", version)
    if version.deployments.exists():
        raise ValidationError(
            {"version": [f"{version} has deployments; archive it instead of deleting it."]}
        )
    with transaction.atomic():
        version.delete()


def set_version_archived(actor, version: ModelVersion, archived: bool, reason="") -> ModelVersion:
    """Archive (hide from default lists) or restore a version; return it."""
    require(actor, "version.edit", version)
    if version.archived == archived:
        return version
    with transaction.atomic():
        version.archived = archived
        version.save(update_fields=["archived", "updated_at"])
        kind = VersionEventKind.ARCHIVED if archived else VersionEventKind.UNARCHIVED
        _record(version, kind, actor, reason)
    return version


def _claim_next_number(model_name: str) -> RegisteredModel:
    """Count up the model's latest version number and read its row, in one statement (one
    round trip); the UPDATE's row lock holds until the transaction ends."""
    with connection.cursor() as cursor:  # UPDATE … RETURNING: PostgreSQL, SQLite 3.35+
        cursor.execute(
            f"UPDATE {RegisteredModel._meta.db_table} "
            "SET latest_version_number = latest_version_number + 1 WHERE name = %s "
            f"RETURNING {MODEL_ROW.columns(connection)}",
            [model_name],
        )
        row = cursor.fetchone()
    if row is None:
        raise RegisteredModel.DoesNotExist(f"No model is named {model_name!r}.")
    return MODEL_ROW.instance(connection, row)


def _upload_digest(upload) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for chunk in upload.chunks():
        digest.update(chunk)
        size += len(chunk)
    upload.seek(0)
    return digest.hexdigest(), size


def _check_upload_digest(artifact, expected_sha256, errors) -> tuple[str, int] | None:
    """Digest and size of an upload; a mismatch with the expected SHA-256 is a field error."""
    if artifact is None or errors.get("artifact"):
        return None
    digest, size = _upload_digest(artifact)
    if expected_sha256 and SHA256_PATTERN.match(expected_sha256) and digest != expected_sha256:
        errors.setdefault("artifact_sha256", []).append(
            f"The uploaded file's SHA-256 is {digest}, not the expected one: "
            "the upload may be corrupt or the wrong file."
        )
    return digest, size


def _record(version, kind, actor=None, message="") -> VersionEvent:
    return VersionEvent.objects.create(version=version, kind=kind, actor=actor, message=message)


# --- validation (the job) ----------------------------------------------------------------


def validate_version(version_id: int) -> ModelVersion | None:
    """Validate one version: checksum, load with its flavor, predict on the sample input.

    Returns the version in its final state, or None when there is nothing to do (gone,
    already final, or another worker holds a fresh claim)."""
    attempt = _claim_validation(version_id)
    if attempt is None:
        return None
    version = ModelVersion.objects.select_related("model").get(pk=version_id)
    _record(version, VersionEventKind.VALIDATION_STARTED, message=f"Attempt {attempt}.")
    try:
        summary = _run_validation(version)
    except (ArtifactError, InputError) as exc:
        return _finish_validation(version, attempt, VersionStatus.INVALID, str(exc))
    return _finish_validation(version, attempt, VersionStatus.READY, summary)


def stale_validation_ids() -> list[int]:
    """Versions waiting for a worker, or whose worker died mid-validation."""
    cutoff = timezone.now() - timedelta(seconds=settings.VALIDATION_STALE_AFTER_SECONDS)
    waiting = Q(status=VersionStatus.REGISTERED, created_at__lt=cutoff)
    abandoned = Q(status=VersionStatus.VALIDATING, validation_started_at__lt=cutoff)
    return list(ModelVersion.objects.filter(waiting | abandoned).values_list("pk", flat=True))


def _claim_validation(version_id: int) -> int | None:
    """Move the version to `validating` if no live worker has it; return the attempt number."""
    cutoff = timezone.now() - timedelta(seconds=settings.VALIDATION_STALE_AFTER_SECONDS)
    claimable = Q(status=VersionStatus.REGISTERED) | Q(
        status=VersionStatus.VALIDATING, validation_started_at__lt=cutoff
    )
    claimed = (
        ModelVersion.objects.filter(claimable, pk=version_id).update(
            status=VersionStatus.VALIDATING,
            validation_started_at=timezone.now(),
            validation_attempts=F("validation_attempts") + 1,
        )
        == 1
    )
    if not claimed:
        return None  # another worker got there first, or the version is final or gone
    return ModelVersion.objects.values_list("validation_attempts", flat=True).get(pk=version_id)


def _finish_validation(version, attempt, status, detail) -> ModelVersion:
    """Record the outcome unless a newer attempt has taken over meanwhile."""
    with transaction.atomic():
        written = ModelVersion.objects.filter(
            pk=version.pk, status=VersionStatus.VALIDATING, validation_attempts=attempt
        ).update(status=status, status_detail=detail, validated_at=timezone.now())
        if written:
            audit.record_update(version, None, {"status": (VersionStatus.VALIDATING, status)})
            kind = (
                VersionEventKind.VALIDATED
                if status == VersionStatus.READY
                else VersionEventKind.VALIDATION_FAILED
            )
            event = _record(version, kind, message=detail)
            outcome = "version.validated" if status == VersionStatus.READY else "version.invalid"
            events.publish(outcome, version=version, event=event)
    version.refresh_from_db()
    return version


def _run_validation(version: ModelVersion) -> str:
    """Check the artifact end to end; return a one-line summary or raise ArtifactError."""
    with tempfile.TemporaryDirectory(prefix="mlops-validate-") as folder:
        local = _local_artifact(version, Path(folder))
        if local.storage_location:  # a logged model's location: MLflow's download URI
            ModelVersion.objects.filter(pk=version.pk).update(
                storage_location=local.storage_location
            )
        if version.artifact_sha256 and local.sha256 != version.artifact_sha256:
            raise ArtifactError(
                f"Checksum mismatch: the artifact's SHA-256 is {local.sha256}, "
                f"registered {version.artifact_sha256}."
            )
        facts = _record_facts(version, local)
        if version.reference_data:
            _check_reference_columns(version, facts.signature if facts else None)
        model = load_model(local.path, local.flavor)
        sample = version.sample_input or (facts.input_example if facts else None)
        if not sample:
            return "Loaded; no sample input or input_example was given to predict on."
        predictions = predict(model, sample)
    if len(predictions) != len(sample):
        raise ArtifactError(
            f"predict() returned {len(predictions)} predictions for {len(sample)} sample rows."
        )
    preview = ", ".join(str(p) for p in predictions[:5])
    summary = f"Loaded and predicted {len(predictions)} sample rows: [{preview}]."
    if facts and not version.sample_input:
        summary += " (the model's input_example)"
    missing = facts and mlflow_model.missing_requirements(facts.requirements)
    if missing:
        summary += f" Pinned requirements not installed here: {', '.join(missing)}."
    return summary


def _record_facts(version: ModelVersion, local) -> mlflow_model.Facts | None:
    """Store what the artifact is: its digest and size, its format, and an MLflow model's
    flavors, signature and requirements (written before loading, so an invalid version
    shows them too). Returns the MLflow facts, or None for a joblib pickle."""
    fields = {"artifact_sha256": local.sha256, "artifact_size": local.size}
    facts = None
    fields["flavor"] = local.flavor
    if local.flavor == Flavor.MLFLOW:
        try:
            facts = mlflow_model.read_facts(local.path)
        except mlflow_model.MlflowModelError as exc:
            ModelVersion.objects.filter(pk=version.pk).update(**fields)
            raise ArtifactError(str(exc)) from exc
        fields.update(
            mlflow_flavors=facts.flavors,
            signature=facts.signature,
            requirements=facts.requirements,
            missing_requirements=mlflow_model.missing_requirements(facts.requirements),
        )
    ModelVersion.objects.filter(pk=version.pk).update(**fields)
    return facts


def _local_artifact(version: ModelVersion, folder: Path) -> sources.LocalArtifact:
    """The version's artifact laid out under `folder` (uploaded, or fetched from its URI)."""
    try:
        return sources.local_copy(version, folder)
    except (sources.SourceError, artifacts.Refused) as exc:
        raise ArtifactError(str(exc)) from exc
    except httpx.HTTPError as exc:
        raise ArtifactError(f"Could not download {version.artifact_uri}: {exc}") from exc


# --- input checks -------------------------------------------------------------------------


def _check_artifact(artifact, uri, sha256, errors) -> None:
    if bool(artifact) == bool(uri and uri.strip()):
        errors.setdefault("artifact", []).append(
            "Upload an artifact file or give an artifact_uri, exactly one of the two."
        )
        return
    if artifact is not None:
        if not artifact.name.lower().endswith(ARTIFACT_EXTENSIONS):
            errors.setdefault("artifact", []).append(
                "Upload a scikit-learn model saved with joblib (.joblib, .pkl) or an MLflow "
                "model folder as an archive (.zip, .tar.gz)."
            )
        if artifact.size == 0:
            errors.setdefault("artifact", []).append("The uploaded file is empty.")
        if artifact.size > settings.ARTIFACT_MAX_BYTES:
            errors.setdefault("artifact", []).append(
                f"The file is {artifact.size} bytes; the limit is "
                f"{settings.ARTIFACT_MAX_BYTES} bytes (ARTIFACT_MAX_BYTES)."
            )
    else:
        if len(uri) > 1000:
            errors.setdefault("artifact_uri", []).append("Use at most 1000 characters.")
        elif refused := sources.check_uri(uri.strip()):
            errors.setdefault("artifact_uri", []).append(refused)
    if sha256 and not SHA256_PATTERN.match(sha256):
        errors.setdefault("artifact_sha256", []).append("Give 64 hexadecimal characters.")


def _check_metrics(metrics, errors) -> None:
    if not isinstance(metrics, dict):
        errors.setdefault("metrics", []).append(
            'Give an object of names to numbers: {"auc": 0.91}.'
        )
        return
    for name, value in metrics.items():
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            errors.setdefault("metrics", []).append(f"Metric name {name!r} is not a short text.")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            errors.setdefault("metrics", []).append(f"Metric {name!r} must be a number.")
        elif not math.isfinite(value):
            errors.setdefault("metrics", []).append(f"Metric {name!r} must be finite.")


def _check_reference_data(upload, sample_input, errors) -> None:
    """A reference file must be CSV or Parquet, readable, and as wide as the sample rows."""
    if upload is None:
        return
    if upload.size > settings.ARTIFACT_MAX_BYTES:
        errors.setdefault("reference_data", []).append(
            f"The file is {upload.size} bytes; the limit is {settings.ARTIFACT_MAX_BYTES} "
            "bytes (ARTIFACT_MAX_BYTES)."
        )
        return
    try:
        frame = reference.read_table(upload, upload.name)
        if isinstance(sample_input, list):
            reference.check_width(frame, sample_input)
    except reference.ReferenceDataError as exc:
        errors.setdefault("reference_data", []).append(str(exc))
    except ImportError:
        # A web-only install has no pandas: the worker's validation reads the file instead
        # (_check_reference_columns) and marks the version invalid if it cannot.
        pass
    finally:
        upload.seek(0)


def _check_reference_columns(version, signature) -> None:
    """Validation: the reference file's columns must be the signature's inputs."""
    try:
        with version.reference_data.open("rb") as handle:
            frame = reference.read_table(handle, version.reference_data.name)
        reference.in_signature_order(frame, signature)
    except reference.ReferenceDataError as exc:
        raise ArtifactError(f"reference_data: {exc}") from exc


def _check_json_object(field, value, errors) -> None:
    if not isinstance(value, dict):
        errors.setdefault(field, []).append('Give a JSON object, e.g. {"max_depth": 4}.')


def _check_sample_input(sample_input, flavor, errors) -> None:
    """Rows of numbers; an MLflow model (typed columns) also takes text values or records."""
    check = check_rows if flavor == Flavor.MLFLOW else check_instances
    try:
        check(sample_input)
    except InputError as exc:
        errors.setdefault("sample_input", []).append(
            f"Give a few example rows the model can predict on: {exc}"
        )
