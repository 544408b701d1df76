from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from mlops_portal.search import search


class SearchView(APIView):
    """Search models, versions, targets, deployments, incidents and pages (`?q=`)."""

    @extend_schema(
        parameters=[OpenApiParameter("q", str, required=True)],
        responses=inline_serializer(
            "SearchResults", {"q": serializers.CharField(), "results": serializers.DictField()}
        ),
    )
    def get(self, request):
        query = request.query_params.get("q", "")
        groups = search(query)
        results = {
            kind: [{"title": label, "url": url, "id": row.pk} for label, url, row in rows]
            for kind, rows in groups.items()
        }
        return Response({"q": query, "results": results})
