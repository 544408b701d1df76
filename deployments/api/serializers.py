"""Serializers parse and present; every rule lives in deployments.services.

The read serializers of the hot endpoints declare their fields (for the OpenAPI schema)
and build the response by hand in `to_representation`: DRF deep-copies and binds every
declared field per request, which cost more than the rest of a small response."""

from rest_framework import serializers

from deployments.choices import Flavor, VersionStatus
from mlops_portal.core.api.fields import (
    FieldsBuiltOnce,
    JSONObjectField,
    MetricsField,
    RowsField,
    RowsTextField,
    TagListField,
)


class RegisteredModelSerializer(serializers.Serializer):
    name = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True)
    team = serializers.CharField(read_only=True)
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)
    version_count = serializers.IntegerField(source="latest_version_number", read_only=True)
    latest_version = serializers.IntegerField(source="latest_version_number", read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    # The columns a response shows, read with `.values()` for the unfiltered list.
    ROW_FIELDS = (
        "name", "description", "owner_name", "team", "tags", "latest_version_number",
        "created_at", "updated_at",
    )  # fmt: skip

    def to_representation(self, model):
        if isinstance(model, dict):  # a `.values(*ROW_FIELDS)` row
            return {
                "name": model["name"],
                "description": model["description"],
                "owner": model["owner_name"],
                "team": model["team"],
                "tags": model["tags"],
                "version_count": model["latest_version_number"],
                "latest_version": model["latest_version_number"],
                "created_at": iso(model["created_at"]),
                "updated_at": iso(model["updated_at"]),
            }
        return {
            "name": model.name,
            "description": model.description,
            "owner": joined(model, "owner_name", "owner.username"),
            "team": model.team,
            "tags": model.tags,
            "version_count": model.latest_version_number,
            "latest_version": model.latest_version_number,
            "created_at": iso(model.created_at),
            "updated_at": iso(model.updated_at),
        }


class RegisteredModelCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    team = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    tags = TagListField(required=False, default=list)


class RegisteredModelUpdateSerializer(serializers.Serializer):
    description = serializers.CharField(required=False, allow_blank=True)
    team = serializers.CharField(required=False, allow_blank=True, max_length=100)
    tags = TagListField(required=False)


class ModelVersionSerializer(serializers.Serializer):
    model = serializers.CharField(source="model.name", read_only=True)
    version = serializers.IntegerField(source="number", read_only=True)
    status = serializers.ChoiceField(choices=VersionStatus.choices, read_only=True)
    status_detail = serializers.CharField(read_only=True)
    flavor = serializers.ChoiceField(choices=Flavor.choices, read_only=True)
    mlflow_flavors = serializers.ListField(child=serializers.CharField(), read_only=True)
    signature = JSONObjectField(
        read_only=True,
        help_text='An MLflow model\'s signature: {"inputs": [{"name", "type"}], "outputs": …}; '
        "empty for a pickle.",
    )
    requirements = serializers.ListField(child=serializers.CharField(), read_only=True)
    missing_requirements = serializers.ListField(child=serializers.CharField(), read_only=True)
    artifact = serializers.CharField(
        source="artifact.name", read_only=True, allow_null=True,
        help_text="The uploaded file's name in the portal's storage; null for a URI.",
    )  # fmt: skip
    artifact_uri = serializers.CharField(read_only=True, help_text="Empty for an upload.")
    artifact_size = serializers.IntegerField(read_only=True, allow_null=True)
    artifact_sha256 = serializers.CharField(read_only=True)
    metrics = MetricsField(read_only=True)
    params = JSONObjectField(read_only=True)
    source_url = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    sample_input = RowsField(read_only=True)
    reference_data = serializers.CharField(
        read_only=True, allow_null=True,
        help_text="The reference data file's name in the portal's storage (drift); null "
        "without one.",
    )  # fmt: skip
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)
    archived = serializers.BooleanField(read_only=True)
    registered_by = serializers.CharField(source="registered_by.username", read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    validated_at = serializers.DateTimeField(read_only=True, allow_null=True)
    aliases = serializers.ListField(child=serializers.CharField(), read_only=True)

    # The columns a response shows, read with `.values()` for lists: building 25 model
    # instances (and a FieldFile each) cost more than everything else in the response.
    ROW_FIELDS = (
        "model_name", "number", "status", "status_detail", "flavor", "mlflow_flavors",
        "signature", "requirements", "missing_requirements", "artifact",
        "artifact_uri", "artifact_size", "artifact_sha256", "metrics", "params", "source_url",
        "description", "sample_input", "reference_data", "tags", "archived",
        "registered_by_name", "created_at", "validated_at", "id",
    )  # fmt: skip

    def to_representation(self, version):
        if isinstance(version, dict):  # a `.values(*ROW_FIELDS)` row
            return self.row(version)
        return self.row(
            {
                **{name: getattr(version, name, None) for name in self.ROW_FIELDS},
                "model_name": joined(version, "model_name", "model.name"),
                "artifact": version.artifact.name,
                "reference_data": version.reference_data.name,
                "registered_by_name": joined(
                    version, "registered_by_name", "registered_by.username"
                ),
                "aliases": alias_names(version),
            }
        )

    @staticmethod
    def row(values: dict) -> dict:
        return {
            "model": values["model_name"],
            "version": values["number"],
            "status": values["status"],
            "status_detail": values["status_detail"],
            "flavor": values["flavor"],
            "mlflow_flavors": values["mlflow_flavors"],
            "signature": values["signature"],
            "requirements": values["requirements"],
            "missing_requirements": values["missing_requirements"],
            "artifact": values["artifact"] or None,
            "artifact_uri": values["artifact_uri"],
            "artifact_size": values["artifact_size"],
            "artifact_sha256": values["artifact_sha256"],
            "metrics": values["metrics"],
            "params": values["params"],
            "source_url": values["source_url"],
            "description": values["description"],
            "sample_input": values["sample_input"],
            "reference_data": values["reference_data"] or None,
            "tags": values["tags"],
            "archived": values["archived"],
            "registered_by": values["registered_by_name"],
            "created_at": iso(values["created_at"]),
            "validated_at": iso(values["validated_at"]),
            "aliases": values.get("aliases", []),
        }


def alias_names(version) -> list[str]:
    """The version's aliases; a view that knows them (none, for a new version) sets
    `alias_names` and saves the query."""
    known = getattr(version, "alias_names", None)
    if known is not None:
        return known
    return sorted(version.aliases.values_list("alias", flat=True))


def joined(instance, annotation: str, path: str):
    """A related name from the `for_api()` annotation, or by following `path` on objects
    that a service returned without it."""
    if hasattr(instance, annotation):
        return getattr(instance, annotation)
    value = instance
    for part in path.split("."):
        value = getattr(value, part)
    return value


def iso(moment) -> str | None:
    """Timestamps as DRF renders them by default (ISO 8601, 'Z' for UTC)."""
    if moment is None:
        return None
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class VersionDetailsSerializer(serializers.Serializer):
    """What every registration gives besides the artifact."""

    artifact_sha256 = serializers.CharField(
        required=False, allow_blank=True, max_length=64, default="",
        help_text="The artifact's SHA-256 (hex); checked against an upload.",
    )  # fmt: skip
    flavor = serializers.ChoiceField(
        choices=Flavor.choices,
        required=False,
        allow_blank=True,
        default="",
        help_text="Empty: detected from the artifact (an archive or an MLflow URI is mlflow).",
    )
    metrics = MetricsField(required=False, default=dict)
    params = JSONObjectField(required=False, default=dict)
    source_url = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    sample_input = RowsField(
        required=False,
        default=None,
        help_text="Rows the model can predict on. Left out: an MLflow model is checked on its "
        "own input_example, a model with none is only loaded.",
    )
    tags = TagListField(required=False, default=list)


class ModelVersionByUriSerializer(FieldsBuiltOnce, VersionDetailsSerializer):
    """JSON: the artifact stays where it is, at a URI the worker fetches (http(s), s3://,
    runs:/, mlflow-artifacts:/, file:// under the configured roots)."""

    artifact_uri = serializers.CharField(max_length=1000)


class ModelVersionUploadSerializer(VersionDetailsSerializer):
    """multipart/form-data: the artifact file itself (a pickle, or a zipped or tarred MLflow
    model), the other parts beside it (the JSON ones as JSON text)."""

    artifact = serializers.FileField(allow_empty_file=True)
    sample_input = RowsTextField(required=False, default=None)
    reference_data = serializers.FileField(
        required=False, default=None, allow_empty_file=True,
        help_text="Rows typical of the training data (CSV with a header, or Parquet), the "
        "model's columns: live inputs are compared with them for drift.",
    )  # fmt: skip


class ModelAliasSerializer(serializers.Serializer):
    """Point `alias` at `version` of the model (POST models/{name}/aliases/)."""

    alias = serializers.CharField(max_length=255)
    version = serializers.IntegerField(min_value=1, max_value=2_147_483_647)


class ModelVersionUpdateSerializer(serializers.Serializer):
    """The only fields of a registered version that change; sending others is an error."""

    description = serializers.CharField(required=False, allow_blank=True)
    tags = TagListField(required=False)
    archived = serializers.BooleanField(required=False)

    def validate(self, attrs):
        frozen = sorted(set(self.initial_data) - set(self.fields))
        if frozen:
            message = "Versions are immutable: only description, tags and archived change."
            raise serializers.ValidationError({name: [message] for name in frozen})
        return attrs
