from django.db.models import Count, F, Func, Window
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiRequest, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from deployments import services
from deployments.api.serializers import (
    ModelAliasSerializer,
    ModelVersionByUriSerializer,
    ModelVersionSerializer,
    ModelVersionUpdateSerializer,
    ModelVersionUploadSerializer,
    RegisteredModelCreateSerializer,
    RegisteredModelSerializer,
    RegisteredModelUpdateSerializer,
    iso,
)
from deployments.expressions import AliasNames
from deployments.filters import ModelVersionFilter, RegisteredModelFilter
from deployments.models import ModelAlias, ModelVersion, RegisteredModel
from deployments.services import aliases
from mlops_portal.core.api.idempotency import idempotent
from mlops_portal.core.api.parsers import SafeJSONParser
from mlops_portal.core.api.viewsets import ServiceBackedViewSet
from mlops_portal.core.compiled import CompiledValues

# The largest version number PostgreSQL's integer column holds: a bigger one names nothing
# (and, sent as a parameter, would be a database error).
MAX_VERSION_NUMBER = 2_147_483_647
# A page starting further than this is past the last one of any model (numbers stop at
# MAX_VERSION_NUMBER): its page query is not even tried.
MAX_PAGE_OFFSET = MAX_VERSION_NUMBER


def version_shape(names: list[str]):
    """What makes a row of VERSION_ROW or VERSION_PAGE (its columns: `names`) into the
    response's dict, as ModelVersionSerializer.row makes it from a `.values()` dict, without
    that dict (tests compare the two); a page's rows come with the count of all rows."""
    at = {name: position for position, name in enumerate(names)}
    (
        model, number, status_, status_detail, flavor, mlflow_flavors, signature,
        requirements, missing_requirements, artifact, artifact_uri, artifact_size,
        artifact_sha256, metrics, params, source_url, description, sample_input,
        reference_data, tags, archived, registered_by, created_at, validated_at, aliases,
    ) = (at[name] for name in (*ModelVersionSerializer.ROW_FIELDS[:-1], "alias_names"))  # fmt: skip
    total = at.get("total")

    def shape(v: list):
        version = {
            "model": v[model],
            "version": v[number],
            "status": v[status_],
            "status_detail": v[status_detail],
            "flavor": v[flavor],
            "mlflow_flavors": v[mlflow_flavors],
            "signature": v[signature],
            "requirements": v[requirements],
            "missing_requirements": v[missing_requirements],
            "artifact": v[artifact] or None,
            "artifact_uri": v[artifact_uri],
            "artifact_size": v[artifact_size],
            "artifact_sha256": v[artifact_sha256],
            "metrics": v[metrics],
            "params": v[params],
            "source_url": v[source_url],
            "description": v[description],
            "sample_input": v[sample_input],
            "reference_data": v[reference_data] or None,
            "tags": v[tags],
            "archived": v[archived],
            "registered_by": v[registered_by],
            "created_at": iso(v[created_at]),
            "validated_at": iso(v[validated_at]),
            "aliases": v[aliases],
        }
        return version if total is None else (v[total], version)

    return shape


# The hot reads of a model's versions, compiled once per process (mlops_portal.core.compiled):
# each is one round trip, its rows made into the response's dicts. The placeholders mark
# where a request's model name and number go.
VERSION_ROW = CompiledValues(
    lambda name, number: (
        ModelVersion.objects.for_api()
        .filter(model__name=name, number=number)
        .annotate(alias_names=AliasNames())
        .values(*ModelVersionSerializer.ROW_FIELDS, "alias_names")
    ),
    "\x00model-name",
    2_147_000_001,
    shape=version_shape,
)
# A page of versions and, on each row, the count of all of them (the paginator's count).
VERSION_PAGE = CompiledValues(
    lambda name: (
        ModelVersion.objects.for_api()
        .filter(model__name=name)
        .annotate(alias_names=AliasNames(), total=Window(Count("id")))
        .values(*ModelVersionSerializer.ROW_FIELDS, "alias_names", "total")
    ),
    "\x00model-name",
    shape=version_shape,
)
VERSION_COUNT = CompiledValues(
    lambda name: (
        ModelVersion.objects.filter(model__name=name)
        .order_by()
        .values("model_id")
        .annotate(count=Count("id"))
    ),
    "\x00model-name",
)
MODEL_ROWS = CompiledValues(
    lambda: RegisteredModel.objects.for_api().values(*RegisteredModelSerializer.ROW_FIELDS)
)
MODEL_COUNT = CompiledValues(
    lambda: RegisteredModel.objects.order_by().values(count=Func(F("id"), function="COUNT"))
)
# A model has a handful of aliases: reading them all is one query whatever the page (a
# filtered list's; the unfiltered list and one version read theirs in their row).
MODEL_ALIASES = CompiledValues(
    lambda name: (
        ModelAlias.objects.filter(model__name=name).order_by("alias").values("version_id", "alias")
    ),
    "\x00model-name",
)


class RegisteredModelViewSet(ServiceBackedViewSet):
    """Registered models, looked up by name."""

    queryset = RegisteredModel.objects.for_api()
    serializer_class = RegisteredModelSerializer
    filterset_class = RegisteredModelFilter
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    input_serializers = {
        "create": RegisteredModelCreateSerializer,
        "partial_update": RegisteredModelUpdateSerializer,
        "aliases": ModelAliasSerializer,
    }
    action_policy = {
        "create": "model.create",
        "partial_update": "model.edit",
        "aliases": "alias.set",
        "remove_alias": "alias.set",
    }
    http_method_names = [*ServiceBackedViewSet.http_method_names, "delete"]

    def get_queryset(self):
        if self.lists_through_compiled_queries():
            return ModelPage()
        return super().get_queryset()

    @extend_schema(
        request=RegisteredModelCreateSerializer, responses={201: RegisteredModelSerializer}
    )
    @idempotent
    def create(self, request):
        model = services.create_model(request.user, **self.parse_input())
        return self.respond_with(model, status.HTTP_201_CREATED)

    @extend_schema(request=RegisteredModelUpdateSerializer, responses=RegisteredModelSerializer)
    def partial_update(self, request, name=None):
        model = services.update_model(request.user, self.get_object(), **self.parse_input(True))
        return self.respond_with(model)

    @extend_schema(request=ModelAliasSerializer, responses={200: ModelAliasSerializer})
    @action(detail=True, methods=["post"])
    def aliases(self, request, name=None):
        """Point an alias at a version (moving it if it named another); the alias answers."""
        model, fields = self.get_object(), self.parse_input()
        try:
            aliases.set_alias(request.user, model, fields["alias"], fields["version"])
        except ModelVersion.DoesNotExist:
            raise Http404(f"{model} has no version {fields['version']}.") from None
        return Response(fields)

    @extend_schema(
        request=None,
        responses={204: None},
        parameters=[OpenApiParameter("alias", str, OpenApiParameter.PATH, description="An alias.")],
    )
    @action(detail=True, methods=["delete"], url_path="aliases/(?P<alias>[^/]+)")
    def remove_alias(self, request, name=None, alias=None):
        """Remove an alias; removing one that is not there is not an error."""
        aliases.delete_alias(request.user, self.get_object(), alias)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ModelVersionViewSet(ServiceBackedViewSet):
    """Versions of one model, looked up by number. POST registers the next version."""

    serializer_class = ModelVersionSerializer
    filterset_class = ModelVersionFilter
    lookup_field = "number"
    lookup_url_kwarg = "version"
    lookup_value_regex = "[0-9]+"
    input_serializers = {
        "create": ModelVersionByUriSerializer,
        "partial_update": ModelVersionUpdateSerializer,
    }
    action_policy = {"create": "version.register", "partial_update": "version.edit"}

    def get_parsers(self):
        # Registering (POST) is the API's one multipart operation: an upload. PATCH is JSON.
        if getattr(self.request, "method", None) == "POST":
            return [SafeJSONParser(), MultiPartParser()]
        return super().get_parsers()

    def get_input_serializer_class(self):
        if self.action == "create" and self.request.content_type.startswith("multipart/"):
            return ModelVersionUploadSerializer
        return super().get_input_serializer_class()

    def get_registered_model(self) -> RegisteredModel:
        if not hasattr(self, "_registered_model"):
            self._registered_model = get_object_or_404(
                RegisteredModel, name=self.kwargs["model_name"]
            )
        return self._registered_model

    queryset = ModelVersion.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self):
        name = self.kwargs["model_name"]
        if self.lists_through_compiled_queries():
            return VersionPage(name)
        versions = ModelVersion.objects.for_api().filter(model__name=name)
        if self.action != "list":
            return versions
        return versions.values(*ModelVersionSerializer.ROW_FIELDS)

    def retrieve(self, request, model_name=None, version=None):
        """One version and its aliases, read with one compiled query as the response's dict."""
        number = int(version)
        rows = VERSION_ROW.rows(model_name, number) if number <= MAX_VERSION_NUMBER else []
        if not rows:
            raise Http404("No ModelVersion matches the given query.")
        self.check_object_permissions(request, rows[0])
        return Response(rows[0])

    def paginate_queryset(self, queryset):
        """A page of version rows, each with its alias names (one query for the page)."""
        rows = super().paginate_queryset(queryset)
        if rows is None or self.action != "list" or isinstance(queryset, VersionPage):
            return rows  # VersionPage: the response's dicts, aliases in
        names = {}
        for alias in MODEL_ALIASES.rows(self.kwargs["model_name"]):
            names.setdefault(alias["version_id"], []).append(alias["alias"])
        for row in rows:
            row["aliases"] = names.get(row["id"], [])
        return rows

    def list(self, request, *args, **kwargs):
        versions = self.filter_queryset(self.get_queryset())
        if isinstance(versions, VersionPage):
            # Read through the paginator (its 400s and 404s), before it asks for the count.
            paginator = self.paginator
            versions.expect_page(
                paginator.get_page_size(request), paginator.get_page_number(request, None)
            )
            page = self.paginate_queryset(versions)  # the response's dicts: no serializer
            response = self.get_paginated_response(page)
        else:
            response = super().list(request, *args, **kwargs)
        if not response.data["results"]:
            self.get_registered_model()  # 404 for an unknown model, not an empty list
        return response

    @extend_schema(
        operation_id="register_model_version",
        request={
            "application/json": ModelVersionByUriSerializer,
            "multipart/form-data": OpenApiRequest(
                ModelVersionUploadSerializer,
                encoding={
                    part: {"contentType": "application/json"} for part in ("metrics", "params")
                },
            ),
        },
        responses={201: ModelVersionSerializer},
        description="Register the next version: JSON with `artifact_uri`, or multipart with "
        "the `artifact` file (`metrics` and `params` as JSON parts, `sample_input` as JSON "
        "text, `tags` one part each). Validation then runs in the "
        "background; poll the version until `status` is `ready` or `invalid`.",
    )
    @idempotent
    def create(self, request, model_name=None):
        # The service reads the model's row as it hands out the number: no lookup first.
        try:
            version = services.register_version(request.user, model_name, **self.parse_input())
        except RegisteredModel.DoesNotExist as missing:
            raise Http404(str(missing)) from None
        version.alias_names = []  # new: nothing names it yet
        return self.respond_with(version, status.HTTP_201_CREATED, reread=False)

    @extend_schema(request=ModelVersionUpdateSerializer, responses=ModelVersionSerializer)
    def partial_update(self, request, model_name=None, version=None):
        instance = self.get_object()
        changes = self.parse_input(partial=True)
        archived = changes.pop("archived", None)
        if changes:
            services.update_version(request.user, instance, **changes)
        if archived is not None:
            services.set_version_archived(request.user, instance, archived)
        return self.respond_with(instance)


class VersionPage:
    """The versions of one model as the paginator reads them (a count, then a slice), each
    through a compiled query: what `.values()` on the queryset does, without building and
    compiling its SQL on every request. Told the page the paginator will ask for
    (`expect_page`), it reads that page and the count in one query (the count is on every
    row); a page with no row (none there, or past the last) asks for the count alone."""

    ordered = True  # newest first (ModelVersion.Meta.ordering): no paginator warning

    def __init__(self, model_name: str):
        self.model_name = model_name
        self.expected: tuple[int, int] | None = None  # (offset, size) of the page to read
        self.read: list[dict] | None = None  # that page's rows, read with the count

    def expect_page(self, size: int, number: int) -> None:
        offset = (number - 1) * size
        if offset <= MAX_PAGE_OFFSET:  # beyond: past any last page (and PostgreSQL's bigint)
            self.expected = (offset, size)

    def count(self) -> int:
        if self.expected is not None:
            offset, size = self.expected
            found = VERSION_PAGE.rows(self.model_name, limit=size, offset=offset)
            if found:
                self.read = [version for _total, version in found]
                return found[0][0]
        found = VERSION_COUNT.rows(self.model_name)
        return found[0]["count"] if found else 0

    def __getitem__(self, page: slice) -> list[dict]:
        size = page.stop - page.start
        if self.read is not None and self.expected[0] == page.start:
            return self.read[:size]
        found = VERSION_PAGE.rows(self.model_name, limit=size, offset=page.start)
        return [version for _total, version in found]


class ModelPage:
    """Every registered model, as the paginator reads them (see VersionPage)."""

    ordered = True  # by name (RegisteredModel.Meta.ordering)

    def count(self) -> int:
        return MODEL_COUNT.rows()[0]["count"]

    def __getitem__(self, page: slice) -> list[dict]:
        return MODEL_ROWS.rows(limit=page.stop - page.start, offset=page.start)
