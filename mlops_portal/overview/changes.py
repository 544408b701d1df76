"""The change feed: every recorded create/update/delete, filterable by user, kind and
time, for the global page, each object's History link and the API."""

import django_filters
from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType

from mlops_portal.core.audit import KINDS
from mlops_portal.core.filters import UtcDateTimeFilter

ACTIONS = {
    LogEntry.Action.CREATE: "created",
    LogEntry.Action.UPDATE: "updated",
    LogEntry.Action.DELETE: "deleted",
    LogEntry.Action.ACCESS: "accessed",
}


class ChangeFilter(django_filters.FilterSet):
    user = django_filters.CharFilter(field_name="actor__username", label="User")
    kind = django_filters.ChoiceFilter(
        choices=[(key, label.split(".")[1]) for key, label in KINDS.items()], method="of_kind"
    )
    object = django_filters.CharFilter(field_name="object_pk", label="Object id")
    since = UtcDateTimeFilter(field_name="timestamp", lookup_expr="gte")
    until = UtcDateTimeFilter(field_name="timestamp", lookup_expr="lt")

    class Meta:
        model = LogEntry
        fields = ["user", "kind", "object", "since", "until"]

    def of_kind(self, queryset, name, value):
        app_label, model = value.split(".")
        return queryset.filter(
            content_type=ContentType.objects.get_by_natural_key(app_label, model)
        )


def feed():
    return LogEntry.objects.select_related("actor", "content_type").order_by("-timestamp", "-pk")


def describe(entry) -> dict:
    return {
        "id": entry.pk,
        "timestamp": entry.timestamp,
        "actor": entry.actor.username if entry.actor else None,
        "action": ACTIONS.get(entry.action, str(entry.action)),
        "kind": f"{entry.content_type.app_label}.{entry.content_type.model}",
        "object_id": entry.object_pk,
        "object": entry.object_repr,
        "changes": {field: _as_pair(values) for field, values in (entry.changes or {}).items()},
    }


def _as_pair(values):
    """Field changes are [old, new]; many-to-many ones (followers) say what was added or
    removed, shown as a change from nothing."""
    if isinstance(values, dict) and values.get("type") == "m2m":
        return ["", f"{values.get('operation', 'changed')} {', '.join(values.get('objects', []))}"]
    return values
