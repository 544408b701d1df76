"""Filters shared by the pages and the API, so both answer the same query the same way."""

import django_filters
from django.db import connection
from django.db.models import Q

from deployments.choices import DeploymentState, VersionStatus
from deployments.models import Deployment, ModelVersion, RegisteredModel
from mlops_portal.core.filters import IntegerFilter, UtcDateTimeFilter


class RegisteredModelFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Name or description contains")
    owner = django_filters.CharFilter(field_name="owner__username", label="Owner (username)")
    team = django_filters.CharFilter(field_name="team", lookup_expr="iexact")
    tag = django_filters.CharFilter(method="tagged", label="Tag")

    class Meta:
        model = RegisteredModel
        fields = ["q", "owner", "team", "tag"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(description__icontains=value))

    def tagged(self, queryset, name, value):
        return tagged(queryset, value)


def tagged(queryset, tag: str):
    """Rows whose `tags` JSON list holds `tag`.

    PostgreSQL tests list containment; SQLite has no JSON containment, so it matches the
    quoted name in the JSON text, exact because tag names cannot contain quotes."""
    tag = tag.strip().lower()
    if connection.vendor == "postgresql":
        return queryset.filter(tags__contains=[tag])
    return queryset.filter(tags__icontains=f'"{tag}"')


class ModelVersionFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=VersionStatus.choices)
    archived = django_filters.BooleanFilter()
    tag = django_filters.CharFilter(method="tagged", label="Tag")

    class Meta:
        model = ModelVersion
        fields = ["status", "archived", "tag"]

    def tagged(self, queryset, name, value):
        return tagged(queryset, value)


class DeploymentFilter(django_filters.FilterSet):
    target = django_filters.CharFilter(field_name="target__name")
    model = django_filters.CharFilter(field_name="version__model__name")
    version = IntegerFilter(field_name="version__number")
    state = django_filters.MultipleChoiceFilter(choices=DeploymentState.choices)
    requested_by = django_filters.CharFilter(field_name="requested_by__username")
    since = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Deployment
        fields = ["target", "model", "version", "state", "requested_by", "since", "until"]
