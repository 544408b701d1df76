from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from mlops_portal.core.api.pagination import StandardPagination
from mlops_portal.overview.search import KINDS_BY_NAME, results, search, search_kind


class SearchView(APIView):
    """Search models, versions, targets, deployments, incidents and pages (`?q=`): the best
    of each kind, or with `?kind=` all results of one kind, paginated."""

    @extend_schema(
        operation_id="search",
        parameters=[
            OpenApiParameter("q", str, required=True),
            OpenApiParameter("kind", str, enum=list(KINDS_BY_NAME)),
        ],
        responses=inline_serializer(
            "SearchResults", {"q": serializers.CharField(), "results": serializers.DictField()}
        ),
    )
    def get(self, request):
        query = request.query_params.get("q", "")
        kind, ranked = search_kind(query, request.query_params.get("kind", ""))
        if kind is not None:
            paginator = StandardPagination()
            rows = paginator.paginate_queryset(ranked if ranked is not None else [], request)
            return paginator.get_paginated_response(as_json(results(kind, rows)))
        grouped = {name: as_json(found) for name, found in search(query).items()}
        return Response({"q": query, "results": grouped})


def as_json(found) -> list[dict]:
    return [{"title": label, "url": url, "id": row.pk} for label, url, row in found]
