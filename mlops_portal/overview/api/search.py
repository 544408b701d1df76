from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from mlops_portal.core.api.pagination import StandardPagination
from mlops_portal.core.api.viewsets import query_choice
from mlops_portal.overview.search import KINDS_BY_NAME, results, search, search_kind


class SearchHitSerializer(serializers.Serializer):
    title = serializers.CharField()
    url = serializers.CharField()
    id = serializers.IntegerField()


class GroupedHitsSerializer(serializers.Serializer):
    q = serializers.CharField()
    results = serializers.DictField(
        child=SearchHitSerializer(many=True), help_text="The best hits of each kind, by kind."
    )


class HitPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = SearchHitSerializer(many=True)


class SearchView(APIView):
    """Search models, versions, targets, deployments, incidents and pages (`?q=`): the best
    of each kind, or with `?kind=` all results of one kind, paginated."""

    @extend_schema(
        operation_id="search",
        parameters=[
            OpenApiParameter("q", str, required=True),
            OpenApiParameter(
                "kind",
                str,
                enum=list(KINDS_BY_NAME),
                description="Every hit of one kind, paginated.",
            ),
            OpenApiParameter("page", {"type": "integer", "minimum": 1}),
            OpenApiParameter("page_size", {"type": "integer", "minimum": 1, "maximum": 200}),
        ],
        responses=PolymorphicProxySerializer(
            component_name="SearchAnswer",
            serializers=[GroupedHitsSerializer, HitPageSerializer],
            resource_type_field_name=None,
        ),
    )
    def get(self, request):
        if "q" not in request.query_params:
            raise ValidationError({"q": ["Say what to search for: ?q=…"]})
        query = request.query_params["q"]
        paginator = StandardPagination()  # ?page= and ?page_size= are checked even unused
        paginator.get_page_size(request)
        paginator.get_page_number(request, None)
        kind, ranked = search_kind(query, query_choice(request, "kind", list(KINDS_BY_NAME)))
        if kind is not None:
            rows = paginator.paginate_queryset(ranked if ranked is not None else [], request)
            return paginator.get_paginated_response(as_json(results(kind, rows)))
        grouped = {name: as_json(found) for name, found in search(query).items()}
        return Response({"q": query, "results": grouped})


def as_json(found) -> list[dict]:
    return [{"title": label, "url": url, "id": row.pk} for label, url, row in found]
