from rest_framework import serializers

from mlops_portal.core.api.fields import JSONObjectField
from monitoring.choices import HttpMethod, Severity
from monitoring.models import HealthCheck, Incident, IncidentEvent


class HealthCheckSerializer(serializers.ModelSerializer):
    target = serializers.CharField(
        source="target.name", read_only=True, default=None, allow_null=True
    )
    expected_statuses = serializers.ListField(child=serializers.IntegerField(), read_only=True)

    class Meta:
        model = HealthCheck
        fields = [
            "id", "name", "target", "follows_target", "url", "method", "interval_seconds",
            "timeout_seconds", "expected_statuses", "latency_threshold_ms",
            "failures_before_down", "enabled", "state", "consecutive_failures",
            "last_probe_at", "last_ok", "last_latency_ms", "last_error", "snoozed_until",
            "snooze_reason", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class HealthCheckWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    url = serializers.CharField(max_length=500)
    target = serializers.CharField(required=False, allow_null=True, default=None)
    method = serializers.ChoiceField(choices=HttpMethod.choices, default=HttpMethod.GET)
    interval_seconds = serializers.IntegerField(default=30)
    timeout_seconds = serializers.FloatField(default=5.0)
    expected_statuses = serializers.ListField(child=serializers.IntegerField(), default=[200])
    latency_threshold_ms = serializers.FloatField(required=False, allow_null=True, default=None)
    failures_before_down = serializers.IntegerField(default=3)


class HealthCheckUpdateSerializer(HealthCheckWriteSerializer):
    def get_fields(self):
        fields = super().get_fields()
        fields.pop("target")
        for field in fields.values():
            field.required = False
        return fields


class SnoozeSerializer(serializers.Serializer):
    hours = serializers.FloatField()
    reason = serializers.CharField(max_length=300)


class PointSerializer(serializers.Serializer):
    t = serializers.DateTimeField()
    count = serializers.IntegerField()
    failures = serializers.IntegerField()
    availability = serializers.FloatField(allow_null=True)
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)


class ResultsSerializer(serializers.Serializer):
    check = serializers.IntegerField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    bucket = serializers.CharField()
    uptime = serializers.FloatField(allow_null=True)
    points = PointSerializer(many=True)


class IncidentSerializer(serializers.ModelSerializer):
    target = serializers.CharField(
        source="target.name", read_only=True, default=None, allow_null=True
    )
    commander = serializers.CharField(
        source="commander.username", read_only=True, default=None, allow_null=True
    )
    model = serializers.CharField(
        source="version.model.name", read_only=True, default=None, allow_null=True
    )
    version = serializers.IntegerField(
        source="version.number", read_only=True, default=None, allow_null=True
    )
    check = serializers.IntegerField(source="health_check_id", read_only=True, allow_null=True)
    time_to_acknowledge_seconds = serializers.SerializerMethodField()
    time_to_resolve_seconds = serializers.SerializerMethodField()

    class Meta:
        model = Incident
        fields = [
            "id", "title", "severity", "state", "source", "description", "check", "target",
            "deployment", "model", "version", "commander", "opened_at", "acknowledged_at",
            "mitigated_at", "resolved_at", "time_to_acknowledge_seconds",
            "time_to_resolve_seconds",
        ]  # fmt: skip
        read_only_fields = fields

    def get_time_to_acknowledge_seconds(self, incident) -> float | None:
        delta = incident.time_to_acknowledge
        return delta.total_seconds() if delta else None

    def get_time_to_resolve_seconds(self, incident) -> float | None:
        delta = incident.time_to_resolve
        return delta.total_seconds() if delta else None


class IncidentCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=300)
    severity = serializers.ChoiceField(choices=Severity.choices, default=Severity.SEV3)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    target = serializers.CharField(required=False, allow_null=True, default=None)
    deployment = serializers.IntegerField(required=False, allow_null=True, default=None)


class NoteSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="")


class SeveritySerializer(serializers.Serializer):
    severity = serializers.ChoiceField(choices=Severity.choices)
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class IncidentEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(
        source="actor.username", read_only=True, default=None, allow_null=True
    )
    data = JSONObjectField(read_only=True)

    class Meta:
        model = IncidentEvent
        fields = ["id", "kind", "from_state", "to_state", "actor", "message", "data", "created_at"]
        read_only_fields = fields
