from django.db.models import OuterRef, Subquery
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from deployments import services
from deployments.api.deploy_serializers import (
    CommentSerializer,
    DecisionSerializer,
    DeploymentEventSerializer,
    DeploymentRequestSerializer,
    DeploymentSerializer,
    LogLineSerializer,
    ReasonSerializer,
    TargetCreateSerializer,
    TargetSerializer,
    TargetUpdateSerializer,
)
from deployments.backends.webhook import SIGNATURE_HEADER, CallbackRefused
from deployments.choices import Backend, DeploymentEventKind, DeploymentState
from deployments.filters import DeploymentFilter
from deployments.models import Deployment, ModelAlias, RegisteredModel, Target
from deployments.services import aliases, canary
from mlops_portal.core.api.idempotency import idempotent
from mlops_portal.core.api.viewsets import ServiceBackedViewSet, named_object, query_int

LOG_PAGE_SIZE = 500


def targets_with_live():
    live = Deployment.objects.filter(target=OuterRef("pk"), state=DeploymentState.SUCCEEDED)
    return Target.objects.with_backlog().annotate(
        live_deployment_id=Subquery(live.values("pk")[:1])
    )


class TargetViewSet(ServiceBackedViewSet):
    """Deploy targets, looked up by name. MLOps engineers create and change them."""

    queryset = targets_with_live().order_by("name")
    serializer_class = TargetSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    filterset_fields = ["environment", "backend"]
    input_serializers = {
        "create": TargetCreateSerializer,
        "partial_update": TargetUpdateSerializer,
    }
    action_policy = {"create": "target.manage", "partial_update": "target.manage"}

    @extend_schema(request=TargetCreateSerializer, responses={201: TargetSerializer})
    def create(self, request):
        target = services.create_target(request.user, **self.parse_input())
        return self.respond_with(target, status.HTTP_201_CREATED)

    @extend_schema(request=TargetUpdateSerializer, responses=TargetSerializer)
    def partial_update(self, request, name=None):
        target = services.update_target(request.user, self.get_object(), **self.parse_input(True))
        return self.respond_with(target)


def requested_version(data):
    """The version a deploy request names by number or by alias, or a 400 naming the field
    (a body naming something that does not exist is bad input, not a missing URL)."""
    model = named_object(
        RegisteredModel.objects, "model", "No model with this name.", name=data["model"]
    )
    if "alias" in data:
        try:
            return aliases.version_for_alias(model.name, data["alias"])
        except ModelAlias.DoesNotExist:
            raise ValidationError(
                {"alias": [f"{model.name} has no alias {data['alias']!r}."]}
            ) from None
    return named_object(
        model.versions.select_related("model"), "version",
        f"Model {model.name} has no version {data['version']}.", number=data["version"],
    )  # fmt: skip


class DeploymentViewSet(ServiceBackedViewSet):
    """Deployments: POST requests one; actions approve, reject, cancel and roll back."""

    queryset = Deployment.objects.for_list()
    serializer_class = DeploymentSerializer
    filterset_class = DeploymentFilter
    input_serializers = {
        "create": DeploymentRequestSerializer,
        "approve": DecisionSerializer,
        "reject": DecisionSerializer,
        "cancel": ReasonSerializer,
        "rollback": ReasonSerializer,
        "promote": DecisionSerializer,
        "abort": ReasonSerializer,
        "comments": CommentSerializer,
    }
    action_policy = {
        "create": "deployment.request",
        "approve": "deployment.approve",
        "reject": "deployment.reject",
        "cancel": "deployment.cancel",
        "rollback": "deployment.rollback",
        "promote": "deployment.canary",
        "abort": "deployment.canary",
        "comments": "deployment.comment",
    }

    @extend_schema(request=DeploymentRequestSerializer, responses={201: DeploymentSerializer})
    @idempotent
    def create(self, request):
        data = self.parse_input()
        version = requested_version(data)
        target = named_object(Target.objects, "target", "No target with this name.",
                              name=data["target"])  # fmt: skip
        deployment = services.request_deployment(
            request.user,
            version=version,
            target=target,
            reason=data["reason"],
            change_ticket=data["change_ticket"],
            strategy=data["strategy"],
            canary_steps=data["canary_steps"],
            canary_step_seconds=data["canary_step_seconds"],
        )
        return self.respond_with(deployment, status.HTTP_201_CREATED)

    @extend_schema(request=DecisionSerializer, responses=DeploymentSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        data = self.parse_input()
        deployment = services.approve_deployment(
            request.user,
            self.get_object(),
            comment=data["comment"],
            override_reason=data["override_reason"],
        )
        return self.respond_with(deployment)

    @extend_schema(request=DecisionSerializer, responses=DeploymentSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        comment = self.parse_input()["comment"]
        deployment = services.reject_deployment(request.user, self.get_object(), comment=comment)
        return self.respond_with(deployment)

    @extend_schema(request=ReasonSerializer, responses=DeploymentSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        reason = self.parse_input()["reason"]
        deployment = services.cancel_deployment(request.user, self.get_object(), reason=reason)
        return self.respond_with(deployment)

    @extend_schema(request=DecisionSerializer, responses=DeploymentSerializer)
    @action(detail=True, methods=["post"])
    def promote(self, request, pk=None):
        """Promote a running canary now (its promotion runs as a job; follow `state`)."""
        comment = self.parse_input()["comment"]
        deployment = canary.promote_canary(request.user, self.get_object(), comment=comment)
        return self.respond_with(deployment)

    @extend_schema(request=ReasonSerializer, responses=DeploymentSerializer)
    @action(detail=True, methods=["post"])
    def abort(self, request, pk=None):
        """Abort a running canary: the live version takes all the traffic back."""
        reason = self.parse_input()["reason"]
        deployment = canary.abort_canary(request.user, self.get_object(), reason=reason)
        return self.respond_with(deployment)

    @extend_schema(request=ReasonSerializer, responses={201: DeploymentSerializer})
    @idempotent  # above @action, which would replace the header's schema
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        reason = self.parse_input()["reason"]
        rollback = services.rollback_deployment(request.user, self.get_object(), reason=reason)
        return self.respond_with(rollback, status.HTTP_201_CREATED)

    @extend_schema(
        responses=LogLineSerializer(many=True),
        parameters=[
            OpenApiParameter(
                "after", {"type": "integer", "minimum": 0}, description="Only lines after this id."
            )
        ],
    )
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def logs(self, request, pk=None):
        deployment = self.get_object()
        after = query_int(request, "after", default=0)
        lines = deployment.log_lines.filter(pk__gt=after)
        return Response(LogLineSerializer(lines[:LOG_PAGE_SIZE], many=True).data)

    @extend_schema(methods=["get"], responses=DeploymentEventSerializer(many=True))
    @extend_schema(
        methods=["post"], request=CommentSerializer, responses={201: DeploymentEventSerializer}
    )
    @action(detail=True, methods=["get", "post"], pagination_class=None, filterset_class=None)
    def comments(self, request, pk=None):
        deployment = self.get_object()
        if request.method == "POST":
            comment = services.add_comment(request.user, deployment, self.parse_input()["body"])
            return Response(DeploymentEventSerializer(comment).data, status=201)
        comments = deployment.events.filter(kind=DeploymentEventKind.COMMENT).select_related(
            "actor"
        )
        return Response(DeploymentEventSerializer(comments, many=True).data)


class DeploymentCallbackView(APIView):
    """The CD system reports a webhook deployment's outcome, signed with the target's secret
    (`X-MLOps-Signature`); no token, the signature is the credential."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="report_deployment_outcome",
        request=None,
        responses={200: DeploymentSerializer},
        auth=[],
    )
    def post(self, request, pk):
        deployment = get_object_or_404(
            Deployment.objects.for_list(), pk=pk, target__backend=Backend.WEBHOOK
        )
        signature = request.headers.get(SIGNATURE_HEADER, "")
        try:
            deployment = services.receive_callback(deployment, request.body, signature)
        except CallbackRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_401_UNAUTHORIZED)
        return Response(DeploymentSerializer(deployment).data)
