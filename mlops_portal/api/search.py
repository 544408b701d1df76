from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from mlops_portal.api.pagination import StandardPagination
from mlops_portal.search import results, search, search_kind


class SearchView(APIView):
    """Search models, versions, targets, deployments, incidents and pages (`?q=`): the best
    of each kind, or with `?kind=` all results of one kind, paginated."""

    @extend_schema(
        parameters=[
            OpenApiParameter("q", str, required=True),
            OpenApiParameter(
                "kind",
                str,
                enum=["models", "versions", "targets", "deployments", "incidents", "pages"],
            ),
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
            found = [
                {"title": label, "url": url, "id": row.pk}
                for label, url, row in results(kind, rows)
            ]
            return paginator.get_paginated_response(found)
        groups = search(query)
        grouped = {
            name: [{"title": label, "url": url, "id": row.pk} for label, url, row in rows]
            for name, rows in groups.items()
        }
        return Response({"q": query, "results": grouped})
