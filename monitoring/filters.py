"""Filters shared by the monitoring pages and API."""

import django_filters

from mlops_portal.core.filters import UtcDateTimeFilter
from monitoring.choices import CheckState, IncidentState, Severity
from monitoring.models import HealthCheck, Incident


class HealthCheckFilter(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=CheckState.choices)
    target = django_filters.CharFilter(field_name="target__name")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = HealthCheck
        fields = ["state", "target", "q"]


class IncidentFilter(django_filters.FilterSet):
    severity = django_filters.MultipleChoiceFilter(choices=Severity.choices)
    state = django_filters.MultipleChoiceFilter(choices=IncidentState.choices)
    target = django_filters.CharFilter(field_name="target__name")
    since = UtcDateTimeFilter(field_name="opened_at", lookup_expr="gte")
    until = UtcDateTimeFilter(field_name="opened_at", lookup_expr="lt")

    class Meta:
        model = Incident
        fields = ["severity", "state", "target", "since", "until"]
