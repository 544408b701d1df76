from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import renderers, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from deployments.models import RegisteredModel, Target
from docs_app import services
from docs_app.cards import card_markdown, model_card
from docs_app.models import Page
from docs_app.views import render_markdown
from mlops_portal.core.api.fields import TagListField, check_json_types
from mlops_portal.core.api.viewsets import ServiceBackedViewSet, query_choice


class PageSerializer(serializers.ModelSerializer):
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)
    parent = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    linked_models = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    linked_targets = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    updated_by = serializers.CharField(source="updated_by.username", read_only=True)

    class Meta:
        model = Page
        fields = ["slug", "title", "body", "tags", "parent", "linked_models", "linked_targets",
                  "revision_number", "updated_by", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = fields


class PageWriteSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200)
    slug = serializers.RegexField(
        services.SLUG_PATTERN.pattern, max_length=120, required=False,
        help_text="Lowercase words joined by hyphens; made from the title when left out.",
    )  # fmt: skip
    body = serializers.CharField(required=False, allow_blank=True, default="")
    tags = TagListField(required=False, default=list)
    parent = serializers.CharField(
        max_length=120, required=False, allow_null=True, default=None,
        help_text="The parent page's slug.",
    )  # fmt: skip
    linked_models = serializers.ListField(child=serializers.CharField(), required=False,
                                          default=list)  # fmt: skip
    linked_targets = serializers.ListField(child=serializers.CharField(), required=False,
                                           default=list)  # fmt: skip
    summary = serializers.CharField(required=False, allow_blank=True, max_length=300, default="")


class PageUpdateSerializer(serializers.Serializer):
    """A PATCH: every field but `base_revision` optional, and a field not sent is kept
    (no defaults here, unlike PageWriteSerializer)."""

    base_revision = serializers.IntegerField(
        help_text="The revision_number you edited; a newer one on the server is a 409."
    )
    title = serializers.CharField(max_length=200, required=False)
    body = serializers.CharField(required=False, allow_blank=True)
    tags = TagListField(required=False)
    parent = serializers.CharField(
        max_length=120, required=False, allow_null=True,
        help_text="The parent page's slug; null moves the page to the top.",
    )  # fmt: skip
    linked_models = serializers.ListField(child=serializers.CharField(), required=False)
    linked_targets = serializers.ListField(child=serializers.CharField(), required=False)
    summary = serializers.CharField(required=False, allow_blank=True, max_length=300)


class RevisionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    title = serializers.CharField()
    body = serializers.CharField()
    summary = serializers.CharField()
    author = serializers.CharField(source="author.username")
    created_at = serializers.DateTimeField()


class PreviewSerializer(serializers.Serializer):
    body = serializers.CharField(allow_blank=True)


class PageViewSet(ServiceBackedViewSet):
    """Documentation pages by slug; PATCH needs `base_revision` (edit conflicts are 409)."""

    queryset = Page.objects.select_related("parent", "updated_by").prefetch_related(
        "linked_models", "linked_targets"
    )
    serializer_class = PageSerializer
    lookup_field = "slug"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    input_serializers = {"create": PageWriteSerializer, "partial_update": PageUpdateSerializer}
    action_policy = {
        "create": "docs.write",
        "partial_update": "docs.write",
        "destroy": "docs.write",
    }

    @extend_schema(request=PageWriteSerializer, responses={201: PageSerializer})
    def create(self, request):
        page = services.create_page(request.user, **_links(self.parse_input()))
        return self.respond_with(page, status.HTTP_201_CREATED)

    @extend_schema(request=PageUpdateSerializer, responses=PageSerializer)
    def partial_update(self, request, slug=None):
        data = _links(self.parse_input())
        page = services.save_page(request.user, self.get_object(), **data)
        return self.respond_with(page)

    def destroy(self, request, slug=None):
        services.delete_page(request.user, self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=RevisionSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def revisions(self, request, slug=None):
        revisions = self.get_object().revisions.select_related("author")
        return Response(RevisionSerializer(revisions, many=True).data)


class PagePreviewView(APIView):
    """Render Markdown as a page would show it (sanitised HTML and table of contents)."""

    @extend_schema(
        operation_id="preview_page",
        request=PreviewSerializer,
        responses=inline_serializer("Preview", {"html": serializers.CharField(),
                                                "toc": serializers.ListField()}),
    )  # fmt: skip
    def post(self, request):
        payload = PreviewSerializer(data=request.data)
        check_json_types(payload, request.data)
        payload.is_valid(raise_exception=True)
        rendered = render_markdown(payload.validated_data["body"])
        toc = [{"level": e.level, "text": e.text, "anchor": e.anchor} for e in rendered.toc]
        return Response({"html": rendered.html, "toc": toc})


class MarkdownRenderer(renderers.BaseRenderer):
    media_type = "text/markdown"
    format = "md"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict) and "model" in data and "versions" in data:
            return card_markdown(data).encode()
        return str(data.get("detail", data) if isinstance(data, dict) else data).encode()


class ModelCardView(APIView):
    """The generated model card: JSON, or Markdown with `?format=md`."""

    renderer_classes = [renderers.JSONRenderer, MarkdownRenderer]

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=["json", "md"])],
        responses={200: inline_serializer("ModelCard", {"model": serializers.CharField()})},
    )
    def get(self, request, name, format=None):
        query_choice(request, "format", ["json", "md"])
        model = get_object_or_404(RegisteredModel.objects.select_related("owner"), name=name)
        return Response(model_card(model))


def _links(data: dict) -> dict:
    """Resolve parent slug and linked names to rows (unknown names are 400s)."""
    errors = {}
    if data.get("parent"):
        data["parent"] = Page.objects.filter(slug=data["parent"]).first()
        if data["parent"] is None:
            errors["parent"] = ["No page with this slug."]
    for field, model, key in (("linked_models", RegisteredModel, "name"),
                              ("linked_targets", Target, "name")):  # fmt: skip
        if field not in data:  # a PATCH that leaves the links alone
            continue
        names = data[field] or []
        rows = list(model.objects.filter(**{f"{key}__in": names}))
        if len(rows) != len(set(names)):
            errors[field] = ["Unknown: " + ", ".join(sorted(set(names) - {r.name for r in rows}))]
        data[field] = rows
    if errors:
        raise serializers.ValidationError(errors)
    return data
