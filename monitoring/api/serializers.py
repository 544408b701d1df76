from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from mlops_portal.core.api.fields import JSONObjectField
from mlops_portal.core.policy import can
from monitoring.choices import CheckKind, Comparison, HttpMethod, RuleMetric, Severity
from monitoring.models import AlertRule, HealthCheck, Incident, IncidentEvent


class HealthCheckSerializer(serializers.ModelSerializer):
    target = serializers.CharField(
        source="target.name", read_only=True, default=None, allow_null=True
    )
    expected_statuses = serializers.ListField(child=serializers.IntegerField(), read_only=True)
    ping_url = serializers.SerializerMethodField(
        help_text="Heartbeats: the URL the job pings; only for those who manage checks."
    )

    class Meta:
        model = HealthCheck
        fields = [
            "id", "name", "kind", "target", "follows_target", "url", "method",
            "interval_seconds", "timeout_seconds", "expected_statuses", "latency_threshold_ms",
            "failures_before_down", "period_seconds", "cron_expression", "cron_timezone",
            "grace_seconds", "ping_url", "enabled",
            "state", "consecutive_failures", "last_probe_at", "last_ok", "last_latency_ms",
            "last_error", "last_ping_at", "ping_deadline", "snoozed_until", "snooze_reason",
            "created_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_ping_url(self, check) -> str | None:
        request = self.context.get("request")
        if check.ping_key is None or request is None or not can(request.user, "check.manage"):
            return None
        return request.build_absolute_uri(reverse("ping", args=[check.ping_key]))


class HealthCheckWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=CheckKind.choices, default=CheckKind.HTTP)
    url = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)
    target = serializers.CharField(required=False, allow_null=True, default=None)
    method = serializers.ChoiceField(choices=HttpMethod.choices, default=HttpMethod.GET)
    interval_seconds = serializers.IntegerField(default=30)
    timeout_seconds = serializers.FloatField(default=5.0)
    expected_statuses = serializers.ListField(child=serializers.IntegerField(), default=[200])
    latency_threshold_ms = serializers.FloatField(required=False, allow_null=True, default=None)
    failures_before_down = serializers.IntegerField(default=3)
    period_seconds = serializers.IntegerField(required=False, allow_null=True, default=None)
    cron_expression = serializers.CharField(
        max_length=100, required=False, default="", allow_blank=True,
        help_text="Heartbeats, instead of a period: five cron fields, e.g. '0 2 * * *'.",
    )  # fmt: skip
    cron_timezone = serializers.CharField(max_length=64, required=False, default="UTC")
    grace_seconds = serializers.IntegerField(required=False, allow_null=True, default=None)


class HealthCheckUpdateSerializer(HealthCheckWriteSerializer):
    def get_fields(self):
        fields = super().get_fields()
        fields.pop("target")
        fields.pop("kind")
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


class AlertRuleSerializer(serializers.ModelSerializer):
    model = serializers.CharField(
        source="model.name", read_only=True, default=None, allow_null=True
    )
    target = serializers.CharField(
        source="target.name", read_only=True, default=None, allow_null=True
    )

    class Meta:
        model = AlertRule
        fields = [
            "id", "name", "model", "target", "metric", "feature", "comparison", "threshold",
            "for_minutes", "severity", "enabled", "muted", "mute_reason", "condition", "state",
            "firing_since", "last_evaluated_at", "last_value", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class AlertRuleWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    model = serializers.CharField(
        required=False, allow_null=True, default=None,
        help_text="The registered model's name (or give a target).",
    )  # fmt: skip
    target = serializers.CharField(
        required=False, allow_null=True, default=None, help_text="The target's name (or a model)."
    )
    metric = serializers.ChoiceField(choices=RuleMetric.choices)
    feature = serializers.CharField(
        required=False, allow_blank=True, max_length=200, default="",
        help_text="drift_feature only: the feature's name (a reference data column).",
    )  # fmt: skip
    comparison = serializers.ChoiceField(choices=Comparison.choices, default=Comparison.GT)
    threshold = serializers.FloatField(
        help_text="% for error rate and drop, ms for latency, PSI for drift (0.25: drifted)."
    )
    for_minutes = serializers.IntegerField(default=5)
    severity = serializers.ChoiceField(choices=Severity.choices, default=Severity.SEV3)
    enabled = serializers.BooleanField(default=True)


class AlertRuleUpdateSerializer(AlertRuleWriteSerializer):
    def get_fields(self):
        fields = super().get_fields()
        fields.pop("model")
        fields.pop("target")
        for field in fields.values():
            field.required = False
        return fields


class MuteSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300)


@extend_schema_field(
    {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}],
     "description": "The true class (text, whole number, true/false) or value (a number)."}
)  # fmt: skip
class LabelField(serializers.JSONField):
    """A feedback label: any JSON scalar; the service decides what fits the model."""


class FeedbackItemSerializer(serializers.Serializer):
    prediction_id = serializers.CharField(
        max_length=64, help_text="The `prediction_id` the model server answered with."
    )
    row = serializers.IntegerField(
        min_value=0, default=0, help_text="The row's index in its request (default 0)."
    )
    label = LabelField()


class FeedbackSerializer(serializers.Serializer):
    labels = FeedbackItemSerializer(many=True, allow_empty=False, max_length=1000)


class FeedbackResultSerializer(serializers.Serializer):
    deployment = serializers.IntegerField()
    recorded = serializers.IntegerField(help_text="Rows labelled (a repeated label replaces).")
