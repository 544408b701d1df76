"""The registry's rows as MLflow's JSON: `version` a string, times in epoch milliseconds,
empty fields left out where an MLflow server leaves them out.

The functions read flat attributes: `model_name`, `registered_by_name` and `owner_name`
(the `for_api()` annotations on instances), so pages of rows are read with `.values()` into
`Row`s instead of building model instances with their related users."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace as Row

from django.core.files.storage import default_storage
from django.db.models import BigIntegerField, Case, CharField, F, Func, Min, Value, When, Window
from django.db.models.functions import RowNumber

from deployments.choices import Stage, VersionStatus
from deployments.expressions import AliasNames
from deployments.models import ModelAlias, ModelVersion
from mlops_portal.core.compiled import CompiledValues

STATUS = {
    VersionStatus.REGISTERED: "PENDING_REGISTRATION",
    VersionStatus.VALIDATING: "PENDING_REGISTRATION",
    VersionStatus.READY: "READY",
    VersionStatus.INVALID: "FAILED_REGISTRATION",
}
STAGE_LABELS = {value: label for value, label in Stage.choices}
ARCHIVED_LABEL = "Archived"
# MLflow's stage names, any case, to ours ("archived" is the `archived` flag).
STAGES_BY_NAME = {label.lower(): value for value, label in Stage.choices} | {"archived": "archived"}


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def millis(moment) -> int:
    """Milliseconds since the epoch, exactly (a float timestamp could round 0.123 s to 122)."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def timestamp(item, name: str) -> int:
    """`<name>_at` in epoch milliseconds: rows read with `.values()` carry `<name>_ms`,
    computed by the database (TIMES); a model instance has only the datetime."""
    computed = getattr(item, f"{name}_ms", None)
    return computed if computed is not None else millis(getattr(item, f"{name}_at"))


class EpochMillis(Func):
    """A timestamp column as whole milliseconds since the epoch, as `millis` computes it:
    a page of 100 models in MLflow's format holds 400 timestamps, and reading each as a
    datetime, then converting it, was a third of its CPU."""

    output_field = BigIntegerField()

    @property
    def convert_value(self):
        return self._convert_value_noop  # already an integer: no int() for each of the 400

    def as_sql(self, compiler, connection, **extra):  # PostgreSQL
        template = "FLOOR(EXTRACT(EPOCH FROM %(expressions)s) * 1000)::bigint"
        return super().as_sql(compiler, connection, template=template, **extra)

    def as_sqlite(self, compiler, connection, **extra):
        # Stored as '2026-12-02 07:58:19.123456' (no fraction at 0 µs): whole seconds, then
        # the first three digits of the fraction (strftime's %f would round them).
        template = (
            "(CAST(strftime('%%%%s', %(expressions)s) AS INTEGER) * 1000"
            " + CAST(substr(%(expressions)s, 21, 3) AS INTEGER))"
        )
        return super().as_sql(compiler, connection, template=template, **extra)


def current_stage(version) -> str:
    return ARCHIVED_LABEL if version.archived else STAGE_LABELS[version.stage]


def effective_stage():
    """SQL for the stage MLflow shows: "archived" when archived, else the stored stage."""
    return Case(
        When(archived=True, then=Value("archived")), default=F("stage"), output_field=CharField()
    )


def model_version(version: ModelVersion, request, aliases=None) -> dict:
    """One version; `aliases` are its alias names (none for the latest_versions lists,
    as MLflow sends them)."""
    body = {
        "name": version.model_name,
        "version": str(version.number),
        "creation_timestamp": timestamp(version, "created"),
        "last_updated_timestamp": timestamp(version, "updated"),
        "user_id": version.registered_by_name,
        "current_stage": current_stage(version),
        "description": version.description,
        "source": source(version, request),
        "run_id": version.run_id,
        "status": STATUS[version.status],
    }
    if version.status == VersionStatus.INVALID:
        body["status_message"] = version.status_detail
    if version.mlflow_tags:
        body["tags"] = _pairs(version.mlflow_tags)
    body["run_link"] = version.source_url
    if aliases:
        body["aliases"] = aliases
    return body


def registered_model(model, request, latest=(), aliases=()) -> dict:
    """One model; `latest` its latest version per stage, `aliases` (alias, number) pairs."""
    body = {
        "name": model.name,
        "creation_timestamp": timestamp(model, "created"),
        "last_updated_timestamp": timestamp(model, "updated"),
        "user_id": model.owner_name,
    }
    if model.description:
        body["description"] = model.description
    if latest:
        body["latest_versions"] = [model_version(version, request) for version in latest]
    if model.mlflow_tags:
        body["tags"] = _pairs(model.mlflow_tags)
    if aliases:
        body["aliases"] = [{"alias": alias, "version": str(number)} for alias, number in aliases]
    return body


def source(version: ModelVersion, request) -> str:
    """The URI the version's artifact was registered from; an uploaded file's media URL."""
    if version.artifact_uri:
        return version.artifact_uri
    name = getattr(version.artifact, "name", version.artifact)  # a FieldFile, or its name
    return upload_url(name, request) if name else ""


def upload_url(name: str, request) -> str:
    """The absolute URL of the uploaded artifact stored as `name`."""
    return request.build_absolute_uri(default_storage.url(name))


def download_uri(version: ModelVersion, request) -> str:
    """Where a client downloads the version from, as an MLflow server answers it: the
    storage location a `models:/m-<id>` source resolved to (the logged model's artifact
    URI, recorded by the validation job), else the source."""
    return version.storage_location or source(version, request)


def _pairs(tags: dict) -> list[dict]:
    return [{"key": key, "value": value} for key, value in tags.items()]


# --- what a page of models or versions needs, in a fixed number of queries -------------------


# What a version's JSON reads, for `.values(*COLUMNS, **TIMES)`.
VERSION_COLUMNS = (
    "id", "model_id", "model_name", "number", "registered_by_name",
    "stage", "archived", "description", "artifact_uri", "artifact", "run_id", "status",
    "status_detail", "mlflow_tags", "source_url",
)  # fmt: skip
MODEL_COLUMNS = ("id", "name", "owner_name", "description", "mlflow_tags")
TIMES = {"created_ms": EpochMillis("created_at"), "updated_ms": EpochMillis("updated_at")}


# The largest version number PostgreSQL's integer column holds: a bigger one names nothing
# (and, sent as a parameter, would be a database error).
MAX_NUMBER = 2_147_483_647
# One version by model name and number, its alias names in its row, compiled once per
# process (mlops_portal.core.compiled); the placeholders mark the request's name and number.
VERSION_ROW = CompiledValues(
    lambda name, number: (
        ModelVersion.objects.for_api()
        .filter(model__name=name, number=number)
        .values(*VERSION_COLUMNS, **TIMES, alias_names=AliasNames())
    ),
    "\x00model-name",
    2_147_000_001,
)


def version_rows(versions, start=None, stop=None) -> list[Row]:
    """`versions[start:stop]` (a queryset) as rows with the columns the JSON needs."""
    values = versions.for_api().values(*VERSION_COLUMNS, **TIMES)[start:stop]
    return [Row(**row) for row in values]


def model_rows(models, start=None, stop=None) -> list[Row]:
    values = models.for_api().values(*MODEL_COLUMNS, **TIMES)[start:stop]
    return [Row(**row) for row in values]


def latest_versions(model_ids, stages=None, *, by_stage_name=False) -> dict[int, list[Row]]:
    """The newest version in each stage of each model (MLflow's `latest_versions`), in one
    query; `stages` (our values) narrows it.

    In MLflow's order: a search lists a model's stages by name (`by_stage_name`); a model
    read alone (get, update, rename, get-latest-versions) lists them in the order its
    versions first reach them, by the lowest version number in each stage."""
    versions = ModelVersion.objects.filter(model_id__in=model_ids)
    ranked = newest_per_stage(versions, by_stage_name=by_stage_name)
    if stages is not None:
        ranked = ranked.filter(effective__in=stages)
    return by_model(version_rows(ranked))


def by_model(versions) -> dict[int, list[Row]]:
    found: dict[int, list[Row]] = {}
    for version in versions:
        found.setdefault(version.model_id, []).append(version)
    return found


def newest_per_stage(versions, *, by_stage_name=True):
    """`versions` narrowed to the newest in each stage of each model, listed by stage name
    (as a search lists them) or by the lowest version number in each stage (as a model
    read alone lists them)."""
    stage = [F("model_id"), effective_stage()]
    ranked = versions.annotate(
        effective=effective_stage(),
        rank=Window(RowNumber(), partition_by=stage, order_by=F("number").desc()),
    )
    if by_stage_name:
        return ranked.filter(rank=1).order_by("model_id", "effective")
    ranked = ranked.annotate(first_in_stage=Window(Min("number"), partition_by=stage))
    return ranked.filter(rank=1).order_by("model_id", "first_in_stage")


def aliases_of_models(model_ids) -> dict[int, list[tuple[str, int]]]:
    """(alias, version number) pairs per model, in one query."""
    rows = ModelAlias.objects.filter(model_id__in=model_ids).values_list(
        "model_id", "alias", "version__number"
    )
    found: dict[int, list[tuple[str, int]]] = {}
    for model_id, alias, number in rows.order_by("model_id", "alias"):
        found.setdefault(model_id, []).append((alias, number))
    return found


def aliases_of_versions(version_ids) -> dict[int, list[str]]:
    """Alias names per version, in one query."""
    rows = ModelAlias.objects.filter(version_id__in=version_ids).values_list("version_id", "alias")
    found: dict[int, list[str]] = {}
    for version_id, alias in rows.order_by("version_id", "alias"):
        found.setdefault(version_id, []).append(alias)
    return found
