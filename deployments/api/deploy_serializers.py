"""Serializers for targets and deployments: they parse and present; services decide."""

from rest_framework import serializers

from deployments.backends import public_settings
from deployments.choices import QUEUE_POLICY_HELP, Backend, Environment, QueuePolicy, Strategy
from deployments.models import Deployment, DeploymentEvent, DeploymentLogLine, Target
from mlops_portal.core.api.fields import JSONObjectField


class TargetSerializer(serializers.ModelSerializer):
    backend_settings = serializers.SerializerMethodField(help_text="Secrets are shown as ********.")
    live_deployment = serializers.SerializerMethodField()
    queued_count = serializers.IntegerField(
        read_only=True, help_text="Approved deployments waiting for this target (its backlog)."
    )

    class Meta:
        model = Target
        fields = [
            "name",
            "environment",
            "backend",
            "backend_settings",
            "requires_approval",
            "rollback_skips_approval",
            "auto_rollback",
            "verification_window_seconds",
            "queue_policy",
            "description",
            "live_deployment",
            "queued_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_backend_settings(self, target) -> dict:
        return public_settings(target.backend, target.backend_settings)

    def get_live_deployment(self, target) -> int | None:
        live = getattr(target, "live_deployment_id", None)
        return live


class TargetCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    environment = serializers.ChoiceField(choices=Environment.choices)
    backend = serializers.ChoiceField(choices=Backend.choices, default=Backend.LOCAL)
    backend_settings = JSONObjectField(required=False, default=dict)
    requires_approval = serializers.BooleanField(
        required=False, allow_null=True, default=None,
        help_text="Defaults to true for production targets.",
    )  # fmt: skip
    rollback_skips_approval = serializers.BooleanField(required=False, default=False)
    auto_rollback = serializers.BooleanField(required=False, default=False)
    verification_window_seconds = serializers.IntegerField(required=False, default=60, min_value=0)
    queue_policy = serializers.ChoiceField(
        choices=QueuePolicy.choices, default=QueuePolicy.SUPERSEDE, help_text=QUEUE_POLICY_HELP
    )
    description = serializers.CharField(required=False, allow_blank=True, default="")


class TargetUpdateSerializer(serializers.Serializer):
    environment = serializers.ChoiceField(choices=Environment.choices, required=False)
    backend_settings = JSONObjectField(
        required=False, help_text="Leave a secret blank to keep the current one."
    )
    requires_approval = serializers.BooleanField(required=False)
    rollback_skips_approval = serializers.BooleanField(required=False)
    auto_rollback = serializers.BooleanField(required=False)
    verification_window_seconds = serializers.IntegerField(required=False, min_value=0)
    queue_policy = serializers.ChoiceField(choices=QueuePolicy.choices, required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class DeploymentSerializer(serializers.ModelSerializer):
    target = serializers.CharField(source="target.name", read_only=True)
    model = serializers.CharField(source="version.model.name", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    requested_by = serializers.CharField(source="requested_by.username", read_only=True)
    approved_by = serializers.CharField(
        source="approved_by.username", read_only=True, default=None, allow_null=True
    )
    change_ticket = serializers.CharField(read_only=True, help_text="A URL, or empty.")
    endpoint = serializers.CharField(read_only=True, help_text="Where it serves; empty before.")
    canary_steps = serializers.ListField(child=serializers.IntegerField(), read_only=True)
    canary_weight = serializers.IntegerField(
        read_only=True, allow_null=True,
        help_text="The share of the traffic a running canary takes now; null otherwise.",
    )  # fmt: skip
    duration_seconds = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "target",
            "model",
            "version",
            "state",
            "reason",
            "change_ticket",
            "requested_by",
            "approved_by",
            "decision_comment",
            "rollback_of",
            "endpoint",
            "failure_reason",
            "strategy",
            "canary_steps",
            "canary_step_seconds",
            "canary_weight",
            "attempts",
            "created_at",
            "queued_at",
            "started_at",
            "finished_at",
            "duration_seconds",
        ]
        read_only_fields = fields

    def get_duration_seconds(self, deployment) -> float | None:
        duration = deployment.duration
        return duration.total_seconds() if duration else None


class DeploymentRequestSerializer(serializers.Serializer):
    """The version by number, or by alias (resolved when the request is made)."""

    model = serializers.CharField()
    version = serializers.IntegerField(min_value=1, max_value=2_147_483_647, required=False)
    alias = serializers.CharField(required=False, max_length=255)
    target = serializers.CharField()
    reason = serializers.CharField()
    change_ticket = serializers.URLField(
        required=False, allow_blank=True, max_length=500, default=""
    )
    strategy = serializers.ChoiceField(
        choices=Strategy.choices, default=Strategy.ALL_AT_ONCE,
        help_text="canary: take canary_steps % of the traffic in turn, each analysed "
        "against the live version after canary_step_seconds, then promote or abort.",
    )  # fmt: skip
    canary_steps = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=99), required=False,
        default=list, max_length=10,
        help_text="Increasing traffic percentages for a canary, e.g. [10, 50].",
    )  # fmt: skip
    canary_step_seconds = serializers.IntegerField(
        required=False, default=0, min_value=0, max_value=86_400,
        help_text="How long each canary step holds before its analysis.",
    )  # fmt: skip

    def validate(self, attrs):
        if ("version" in attrs) == ("alias" in attrs):
            raise serializers.ValidationError(
                {"version": ["Give the version's number or an alias of it (e.g. champion)."]}
            )
        return attrs


class DecisionSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="")
    override_reason = serializers.CharField(
        required=False, allow_blank=True, default="",
        help_text="Required to approve past a policy block; recorded on the timeline.",
    )  # fmt: skip


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class DeploymentEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(
        source="actor.username", read_only=True, default=None, allow_null=True
    )

    class Meta:
        model = DeploymentEvent
        fields = ["id", "kind", "from_state", "to_state", "actor", "message", "created_at"]
        read_only_fields = fields


class CommentSerializer(serializers.Serializer):
    body = serializers.CharField()


class LogLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeploymentLogLine
        fields = ["id", "created_at", "message"]
        read_only_fields = fields
