"""Serializers parse and present; every rule lives in deployments.services."""

from rest_framework import serializers

from deployments.choices import Flavor
from deployments.models import ModelVersion, RegisteredModel
from mlops_portal.api.fields import JSONInputField, TagListField


class RegisteredModelSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    tags = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    version_count = serializers.IntegerField(read_only=True)
    latest_version = serializers.IntegerField(source="latest_version_number", read_only=True)

    class Meta:
        model = RegisteredModel
        fields = [
            "name",
            "description",
            "owner",
            "team",
            "tags",
            "version_count",
            "latest_version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class RegisteredModelCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    team = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    tags = TagListField(required=False, default=list)


class RegisteredModelUpdateSerializer(serializers.Serializer):
    description = serializers.CharField(required=False, allow_blank=True)
    team = serializers.CharField(required=False, allow_blank=True, max_length=100)
    tags = TagListField(required=False)


class ModelVersionSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    version = serializers.IntegerField(source="number", read_only=True)
    tags = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    registered_by = serializers.CharField(source="registered_by.username", read_only=True)
    artifact = serializers.CharField(source="artifact.name", read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "model",
            "version",
            "status",
            "status_detail",
            "flavor",
            "artifact",
            "artifact_uri",
            "artifact_size",
            "artifact_sha256",
            "metrics",
            "params",
            "source_url",
            "description",
            "sample_input",
            "tags",
            "archived",
            "registered_by",
            "created_at",
            "validated_at",
        ]
        read_only_fields = fields


class ModelVersionCreateSerializer(serializers.Serializer):
    """Multipart with an `artifact` file, or JSON with `artifact_uri`."""

    artifact = serializers.FileField(required=False, allow_empty_file=True)
    artifact_uri = serializers.CharField(required=False, allow_blank=True, default="")
    artifact_sha256 = serializers.CharField(required=False, allow_blank=True, default="")
    flavor = serializers.ChoiceField(choices=Flavor.choices, default=Flavor.SKLEARN)
    metrics = JSONInputField(required=False, default=dict)
    params = JSONInputField(required=False, default=dict)
    source_url = serializers.CharField(required=False, allow_blank=True, default="")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    sample_input = JSONInputField(help_text="Rows the model can predict on, e.g. [[5.1, 3.5]].")
    tags = TagListField(required=False, default=list)


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
