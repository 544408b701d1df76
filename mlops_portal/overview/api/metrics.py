"""Dashboard figures as JSON or CSV: `/api/v1/metrics/<figure>/` (`dora`, `deployments`,
`approvals`, `incidents`, `health`), with `?period=week|month&since=&until=&team=&model=`
and `?format=csv` for a spreadsheet."""

import csv
import io

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import renderers, serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from mlops_portal.core.api.viewsets import query_choice
from mlops_portal.overview.dashboards import DEFINITIONS, FIGURES, TRUNCATE, Scope


class CsvRenderer(renderers.BaseRenderer):
    """The figure's rows, one line per period (or target); errors as field,message lines."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        out = io.StringIO()
        if isinstance(data, dict) and isinstance(data.get("rows"), list):
            rows = data["rows"]
            columns = list(rows[0]) if rows else []
            writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        else:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["field", "message"])
            for field, messages in (data or {}).items():
                for message in messages if isinstance(messages, list) else [messages]:
                    writer.writerow([field, message])
        return out.getvalue().encode(self.charset)


class ScopeSerializer(serializers.Serializer):
    period = serializers.ChoiceField(choices=list(TRUNCATE), default="week")
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    team = serializers.CharField(required=False, default="", allow_blank=True)
    model = serializers.CharField(required=False, default="", allow_blank=True)

    def validate(self, attrs):
        problems = Scope(**attrs).problems()
        if problems:
            raise serializers.ValidationError(problems)
        return attrs


def scope_from(params) -> Scope:
    """The Scope asked for in query parameters; ValidationError (400) names a bad one."""
    serializer = ScopeSerializer(data=params)
    serializer.is_valid(raise_exception=True)
    return Scope(**serializer.validated_data)


class MetricsView(APIView):
    renderer_classes = [renderers.JSONRenderer, CsvRenderer]

    @extend_schema(
        parameters=[
            OpenApiParameter("figure", str, OpenApiParameter.PATH, enum=list(FIGURES)),
            OpenApiParameter("period", str, enum=list(TRUNCATE)),
            OpenApiParameter("since", str, description="ISO date-time; default 12 periods ago"),
            OpenApiParameter("until", str, description="ISO date-time; default now"),
            OpenApiParameter("team", str),
            OpenApiParameter("model", str, description="a model's name"),
            OpenApiParameter("format", str, enum=["json", "csv"]),
        ],
        responses=inline_serializer(
            "Figure",
            {
                "figure": serializers.CharField(),
                "period": serializers.CharField(),
                "since": serializers.DateTimeField(),
                "until": serializers.DateTimeField(),
                "definitions": serializers.DictField(),
                "summary": serializers.DictField(),
                "rows": serializers.ListField(child=serializers.DictField()),
            },
        ),
    )
    def get(self, request, figure, format=None):
        if figure not in FIGURES:
            raise NotFound(f"No figure {figure!r}; there are {', '.join(FIGURES)}.")
        query_choice(request, "period", list(TRUNCATE))
        query_choice(request, "format", ["json", "csv"])
        scope = scope_from(request.query_params)
        computed = FIGURES[figure](scope)
        body = {
            "figure": figure,
            "period": scope.period,
            "since": scope.start.isoformat(),
            "until": scope.end.isoformat(),
            "team": scope.team,
            "model": scope.model,
            **computed,
        }
        if figure == "dora":
            body["definitions"] = DEFINITIONS
        return Response(body)
