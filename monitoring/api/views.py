from datetime import timedelta

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from deployments.models import Deployment, RegisteredModel, Target
from mlops_portal.core import policy
from mlops_portal.core.api.fields import check_json_types
from mlops_portal.core.api.permissions import TokenScope
from mlops_portal.core.api.viewsets import ServiceBackedViewSet, named_object, query_choice
from mlops_portal.core.validation import parse_utc_datetime
from monitoring import series
from monitoring.api.serializers import (
    AlertRuleSerializer,
    AlertRuleUpdateSerializer,
    AlertRuleWriteSerializer,
    FeedbackResultSerializer,
    FeedbackSerializer,
    HealthCheckSerializer,
    HealthCheckUpdateSerializer,
    HealthCheckWriteSerializer,
    IncidentCreateSerializer,
    IncidentEventSerializer,
    IncidentSerializer,
    MuteSerializer,
    NoteSerializer,
    ResultsSerializer,
    SeveritySerializer,
    SnoozeSerializer,
)
from monitoring.choices import IncidentSource
from monitoring.filters import HealthCheckFilter, IncidentFilter
from monitoring.models import AlertRule, HealthCheck, Incident
from monitoring.services import alerts, checks, incidents, quality


class HealthCheckViewSet(ServiceBackedViewSet):
    """Health checks; `results/` gives a time range, downsampled on the server."""

    queryset = HealthCheck.objects.select_related("target")
    serializer_class = HealthCheckSerializer
    filterset_class = HealthCheckFilter
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    input_serializers = {
        "create": HealthCheckWriteSerializer,
        "partial_update": HealthCheckUpdateSerializer,
        "snooze": SnoozeSerializer,
    }
    action_policy = {
        "create": "check.manage",
        "partial_update": "check.manage",
        "destroy": "check.manage",
        "pause": "check.pause",
        "resume": "check.pause",
        "snooze": "check.snooze",
    }

    @extend_schema(request=HealthCheckWriteSerializer, responses={201: HealthCheckSerializer})
    def create(self, request):
        data = self.parse_input()
        target = data.pop("target")
        if target:
            target = named_object(Target.objects, "target", "No target with this name.",
                                  name=target)  # fmt: skip
        check = checks.create_check(request.user, target=target, **data)
        return self.respond_with(check, status.HTTP_201_CREATED)

    @extend_schema(request=HealthCheckUpdateSerializer, responses=HealthCheckSerializer)
    def partial_update(self, request, pk=None):
        check = checks.update_check(request.user, self.get_object(), **self.parse_input(True))
        return self.respond_with(check)

    def destroy(self, request, pk=None):
        checks.delete_check(request.user, self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=HealthCheckSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self.respond_with(checks.set_paused(request.user, self.get_object(), True))

    @extend_schema(request=None, responses=HealthCheckSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self.respond_with(checks.set_paused(request.user, self.get_object(), False))

    @extend_schema(request=SnoozeSerializer, responses=HealthCheckSerializer)
    @action(detail=True, methods=["post"])
    def snooze(self, request, pk=None):
        data = self.parse_input()
        check = checks.snooze(request.user, self.get_object(), **data)
        return self.respond_with(check)

    @extend_schema(
        responses=ResultsSerializer,
        parameters=[
            OpenApiParameter("since", str, description="ISO time; default 1 hour ago"),
            OpenApiParameter("until", str, description="ISO time; default now"),
            OpenApiParameter("bucket", str, enum=list(series.BUCKETS),
                             description="Default: raw ≤ 1 h, minute ≤ 1 day, hour beyond"),
        ],
    )  # fmt: skip
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def results(self, request, pk=None):
        check = self.get_object()
        until = _time(request.query_params.get("until"), "until") or timezone.now()
        since = _time(request.query_params.get("since"), "since") or until - timedelta(hours=1)
        bucket = query_choice(request, "bucket", list(series.BUCKETS))
        bucket = bucket or series.bucket_for(since, until)
        if bucket not in series.BUCKETS:
            raise ValidationError({"bucket": [f"Use one of {', '.join(series.BUCKETS)}."]})
        if since >= until:
            raise ValidationError({"since": ["since must be before until."]})
        if bucket == "raw" and until - since > timedelta(days=1):
            raise ValidationError({"bucket": ["Raw results cover at most a day; use minute."]})
        points = series.points(check.pk, since, until, bucket)
        body = {
            "check": check.pk, "since": since, "until": until, "bucket": bucket,
            "uptime": series.uptime([check.pk], since, until)[check.pk], "points": points,
        }  # fmt: skip
        return Response(ResultsSerializer(body).data)


class AlertRuleViewSet(ServiceBackedViewSet):
    """Alert rules on serving metrics; mute and unmute as POST sub-resources."""

    queryset = AlertRule.objects.select_related("model", "target")
    serializer_class = AlertRuleSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    input_serializers = {
        "create": AlertRuleWriteSerializer,
        "partial_update": AlertRuleUpdateSerializer,
        "mute": MuteSerializer,
    }
    action_policy = dict.fromkeys(
        ("create", "partial_update", "destroy", "mute", "unmute"), "rule.manage"
    )

    @extend_schema(request=AlertRuleWriteSerializer, responses={201: AlertRuleSerializer})
    def create(self, request):
        data = self.parse_input()
        model, target = data.pop("model"), data.pop("target")
        if model:
            model = named_object(RegisteredModel.objects, "model", "No model with this name.",
                                 name=model)  # fmt: skip
        if target:
            target = named_object(Target.objects, "target", "No target with this name.",
                                  name=target)  # fmt: skip
        rule = alerts.create_rule(request.user, model=model, target=target, **data)
        return self.respond_with(rule, status.HTTP_201_CREATED)

    @extend_schema(request=AlertRuleUpdateSerializer, responses=AlertRuleSerializer)
    def partial_update(self, request, pk=None):
        rule = alerts.update_rule(request.user, self.get_object(), **self.parse_input(True))
        return self.respond_with(rule)

    def destroy(self, request, pk=None):
        alerts.delete_rule(request.user, self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=MuteSerializer, responses=AlertRuleSerializer)
    @action(detail=True, methods=["post"])
    def mute(self, request, pk=None):
        reason = self.parse_input()["reason"]
        return self.respond_with(alerts.set_muted(request.user, self.get_object(), True, reason))

    @extend_schema(request=None, responses=AlertRuleSerializer)
    @action(detail=True, methods=["post"])
    def unmute(self, request, pk=None):
        return self.respond_with(alerts.set_muted(request.user, self.get_object(), False))


class IncidentViewSet(ServiceBackedViewSet):
    """Incidents, unresolved first; transitions and notes as POST sub-resources."""

    queryset = Incident.objects.for_list()
    serializer_class = IncidentSerializer
    filterset_class = IncidentFilter
    input_serializers = {
        "create": IncidentCreateSerializer,
        "acknowledge": NoteSerializer,
        "mitigate": NoteSerializer,
        "resolve": NoteSerializer,
        "notes": NoteSerializer,
        "severity": SeveritySerializer,
    }
    action_policy = {
        "create": "incident.open",
        "acknowledge": "incident.acknowledge",
        "mitigate": "incident.mitigate",
        "resolve": "incident.resolve",
        "severity": "incident.severity",
        "notes": "incident.note",
    }

    @extend_schema(request=IncidentCreateSerializer, responses={201: IncidentSerializer})
    def create(self, request):
        data = self.parse_input()
        target = deployment = None
        if data["target"]:
            target = named_object(Target.objects, "target", "No target with this name.",
                                  name=data["target"])  # fmt: skip
        if data["deployment"]:
            deployment = named_object(
                Deployment.objects, "deployment", "No deployment with this id.",
                pk=data["deployment"],
            )  # fmt: skip
        incident = incidents.open_incident(
            request.user, title=data["title"], severity=data["severity"],
            description=data["description"], target=target, deployment=deployment,
            source=IncidentSource.API,
        )  # fmt: skip
        return self.respond_with(incident, status.HTTP_201_CREATED)

    def _transition(self, service):
        note = self.parse_input()["note"]
        return self.respond_with(service(self.request.user, self.get_object(), note))

    @extend_schema(request=NoteSerializer, responses=IncidentSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        return self._transition(incidents.acknowledge)

    @extend_schema(request=NoteSerializer, responses=IncidentSerializer)
    @action(detail=True, methods=["post"])
    def mitigate(self, request, pk=None):
        return self._transition(incidents.mitigate)

    @extend_schema(request=NoteSerializer, responses=IncidentSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        return self._transition(incidents.resolve)

    @extend_schema(
        operation_id="set_incident_severity",
        request=SeveritySerializer,
        responses=IncidentSerializer,
    )
    @action(detail=True, methods=["post"])
    def severity(self, request, pk=None):
        data = self.parse_input()
        incident = incidents.change_severity(request.user, self.get_object(), **data)
        return self.respond_with(incident)

    @extend_schema(methods=["get"], responses=IncidentEventSerializer(many=True))
    @extend_schema(methods=["post"], request=NoteSerializer,
                   responses={201: IncidentEventSerializer})  # fmt: skip
    @action(detail=True, methods=["get", "post"], pagination_class=None, filterset_class=None)
    def notes(self, request, pk=None):
        incident = self.get_object()
        if request.method == "POST":
            event = incidents.add_note(request.user, incident, self.parse_input()["note"])
            return Response(IncidentEventSerializer(event).data, status=status.HTTP_201_CREATED)
        events = incident.events.select_related("actor")
        return Response(IncidentEventSerializer(events, many=True).data)


def _time(value, field):
    if not value:
        return None
    try:
        return parse_utc_datetime(value)
    except ValueError:
        raise ValidationError(
            {field: ["Use an ISO 8601 time within the years 1 to 9999, e.g. 2026-11-27T08:00:00Z."]}
        ) from None


class FeedbackView(APIView):
    """Ground-truth labels for predictions a deployment answered: `{"labels": [{
    "prediction_id", "row", "label"}]}`. All or nothing: an unknown prediction id refuses
    the batch with a 400 naming it."""

    permission_classes = [IsAuthenticated, TokenScope]

    @extend_schema(
        operation_id="send_deployment_feedback",
        request=FeedbackSerializer,
        responses={200: FeedbackResultSerializer},
    )
    def post(self, request, pk):
        deployment = get_object_or_404(Deployment.objects.select_related("version"), pk=pk)
        policy.require(request.user, "prediction.feedback", deployment)  # 403 before a 400
        payload = FeedbackSerializer(data=request.data)
        check_json_types(payload, request.data)
        payload.is_valid(raise_exception=True)
        labels = [dict(item) for item in payload.validated_data["labels"]]
        recorded = quality.record_feedback(request.user, deployment, labels)
        return Response({"deployment": deployment.pk, "recorded": recorded})
