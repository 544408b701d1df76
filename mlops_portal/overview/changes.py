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


# The change feed page reads as sentences, not as a database dump: kinds and fields by
# their names, related rows by their names (not their ids), choices by their labels. The
# API keeps `describe`'s raw values: scripts compare them.
KIND_NAMES = {
    "docs_app.page": "Doc page",
    "deployments.registeredmodel": "Model",
    "deployments.modelversion": "Model version",
    "monitoring.healthcheck": "Health check",
    "mlops_portal.apitoken": "API token",
    "mlops_portal.notificationchannel": "Notification channel",
}


class ChangeFilter(django_filters.FilterSet):
    user = django_filters.CharFilter(field_name="actor__username", label="User")
    kind = django_filters.ChoiceFilter(
        choices=[(key, KIND_NAMES.get(key, label.split(".")[1])) for key, label in KINDS.items()],
        method="of_kind",
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


EMPTY = ("None", "", "[]", "{}")


def readable(entries) -> list[dict]:
    """The page's rows for `entries` (one page of LogEntry rows): who, what, and a list of
    (field, old, new) in words. Related rows are named with one query per related model
    on the page, however many rows point at them."""
    entries = list(entries)
    names = _related_names(entries)
    rows = []
    for entry in entries:
        row = describe(entry)
        model = entry.content_type.model_class()
        row["kind_name"] = kind_name(entry.content_type)
        creating = entry.action == LogEntry.Action.CREATE
        row["fields"] = [
            (
                _field_label(model, name),
                _shown(model, name, old, names),
                _shown(model, name, new, names),
            )
            for name, (old, new) in row["changes"].items()
            if old != new and not (creating and _says_nothing(model, name, new))
        ]
        rows.append(row)
    return rows


def _says_nothing(model, name, value) -> bool:
    """Whether a created row's recorded `value` is nothing or the field's default (a new
    version's MLflow stage "None", say): such rows are left out of a creation."""
    if value in EMPTY:
        return True
    field = _field(model, name)
    return bool(field and field.has_default() and field.choices and value == field.get_default())


def kind_name(content_type) -> str:
    label = f"{content_type.app_label}.{content_type.model}"
    model = content_type.model_class()
    fallback = model._meta.verbose_name.capitalize() if model else content_type.model
    return KIND_NAMES.get(label, fallback)


def _field(model, name):
    try:
        return model._meta.get_field(name) if model else None
    except Exception:  # a field since removed from the model: show its raw name
        return None


def _field_label(model, name) -> str:
    field = _field(model, name)
    label = getattr(field, "verbose_name", None) or name.replace("_", " ")
    return str(label)[:1].upper() + str(label)[1:]


def _related_names(entries) -> dict:
    """{(related model, pk as text): name} for every foreign key value on the page."""
    wanted = {}
    for entry in entries:
        model = entry.content_type.model_class()
        for name, values in (entry.changes or {}).items():
            field = _field(model, name)
            if field is None or not field.many_to_one or not isinstance(values, list):
                continue
            wanted.setdefault(field.related_model, set()).update(
                value for value in values if value not in EMPTY
            )
    names = {}
    for related, pks in wanted.items():
        # select_related(): names like "iris v3" read their own foreign keys.
        for obj in related._default_manager.select_related().filter(pk__in=pks):
            names[(related, str(obj.pk))] = getattr(obj, "username", None) or str(obj)
    return names


def _shown(model, name, value, names) -> str:
    """One recorded value in words: — for nothing, names for ids, labels for choices."""
    if value in ("None", ""):
        return "—"
    field = _field(model, name)
    if field is None:
        return value
    if field.many_to_one:
        return names.get((field.related_model, value), f"#{value} (deleted)")
    if field.choices:
        return str(dict(field.flatchoices).get(value, value))
    if field.get_internal_type() == "BooleanField":
        return {"True": "yes", "False": "no"}.get(value, value)
    if field.get_internal_type() == "DateTimeField":
        return _moment(value)
    return value


def _moment(value: str) -> str:
    from datetime import UTC, datetime

    from django.utils import formats, timezone

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    return formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT")
