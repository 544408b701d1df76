from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.serializers import FileField

from mlops_portal.core import uploads
from mlops_portal.core.api.exceptions import UploadTooLarge
from mlops_portal.core.api.fields import check_json_types
from mlops_portal.core.api.permissions import ActionPolicy, TokenScope


class ServiceBackedViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Read with the declared serializer; write by parsing `input_serializers[action]`
    and handing the data to a service function, whose result is read back."""

    input_serializers: dict = {}
    action_policy: dict = {}
    filterset_class = None
    permission_classes = [IsAuthenticated, TokenScope, ActionPolicy]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def parse_input(self, partial=False) -> dict:
        payload = self.get_input_serializer_class()(data=self.request.data, partial=partial)
        refused_upload(self.request, payload)
        check_json_types(payload, self.request.data)
        payload.is_valid(raise_exception=True)
        return payload.validated_data

    def get_input_serializer_class(self):
        """The serializer that parses this action's body."""
        return self.input_serializers[self.action]

    def respond_with(self, instance, status_code=status.HTTP_200_OK, reread=True) -> Response:
        """Answer with `instance` as the read serializer shows it, re-read unless the
        service returned it complete."""
        if reread:
            instance = self.get_queryset().get(pk=instance.pk)
        return Response(self.get_serializer(instance).data, status=status_code)

    def filter_queryset(self, queryset):
        # Filters narrow lists; on one object, or on a list asked without any filter, building
        # the FilterSet (it deep-copies every filter) would only cost time.
        if self.action != "list" or not self.asks_for_a_filter():
            return queryset
        return super().filter_queryset(queryset)

    def lists_through_compiled_queries(self) -> bool:
        """Whether this request is a list the view may read with its compiled queries: asked
        without a filter, for JSON. The schema generator and the browsable API (its filter
        form) need the real queryset."""
        return (
            self.action == "list"
            and not getattr(self, "swagger_fake_view", False)
            and self.request.accepted_renderer.format == "json"
            and not self.asks_for_a_filter()
        )

    def asks_for_a_filter(self) -> bool:
        filterset = self.filterset_class
        if filterset is None:
            return bool(getattr(self, "filterset_fields", None))
        return any(name in self.request.query_params for name in filterset.base_filters)


def named_object(queryset, field: str, message: str, **lookup):
    """The object a body field names, or a 400 naming the field: a body naming something
    that does not exist is bad input, not a URL that does not exist (404)."""
    found = queryset.filter(**lookup).first()
    if found is None:
        raise ValidationError({field: [message]})
    return found


def query_int(request, name: str, default: int) -> int:
    """The query parameter `name` as a whole number of 0 or more, or a 400 naming it."""
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise ValidationError({name: ["Use a whole number of 0 or more."]})
    return int(text)


def query_choice(request, name: str, choices) -> str | None:
    """The query parameter `name` if it is one of `choices` (None when absent), or a 400
    naming it: DRF and forms would read an empty value as "not given"."""
    value = request.query_params.get(name)
    if value is not None and value not in choices:
        raise ValidationError({name: [f'"{value}" is not a valid choice.']})
    return value


def refused_upload(request, payload) -> None:
    """Raise 413 naming the file field when the upload handler refused the request's file
    (mlops_portal.core.uploads): without this, the missing file would read as "no file sent"."""
    message = uploads.refusal(request)
    if message is None:
        return
    files = [name for name, field in payload.fields.items() if isinstance(field, FileField)]
    raise UploadTooLarge({files[0] if files else "detail": [message]})
