from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets

from mlops_portal.overview.changes import ChangeFilter, describe, feed


class ChangeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    timestamp = serializers.DateTimeField()
    actor = serializers.CharField(allow_null=True)
    action = serializers.CharField()
    kind = serializers.CharField()
    object_id = serializers.CharField()
    object = serializers.CharField()
    changes = serializers.DictField(help_text="field → [old, new]")

    def to_representation(self, entry):
        return super().to_representation(describe(entry))


@extend_schema(responses=ChangeSerializer(many=True))
class ChangeViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The change feed: filters `user`, `kind` (e.g. deployments.deployment), `object`,
    `since`, `until`."""

    queryset = feed()
    serializer_class = ChangeSerializer
    filterset_class = ChangeFilter
