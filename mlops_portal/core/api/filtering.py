"""The API's filter backend: the filtersets pages share, held to the types the schema
declares for their query parameters.

A page's form sends every field, empty when unused, and forms read an empty value as "not
given"; a script's `?until=` or `?archived=null` is a mistake, and answering the whole list
would hide it. Text filters take any text (empty means no filter); the others refuse an
empty value, a boolean takes `true` or `false`, and every value must pass the filter's own
form field (an integer, a choice, an ISO date-time), each refusal a 400 naming the
parameter."""

import django_filters
from django import forms
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.exceptions import ValidationError


class StrictFilterBackend(DjangoFilterBackend):
    def filter_queryset(self, request, queryset, view):
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None:
            check_filter_params(filterset_class, request.query_params)
        return super().filter_queryset(request, queryset, view)


def check_filter_params(filterset_class, params) -> None:
    errors = {}
    for name, declared in filterset_class.base_filters.items():
        for value in params.getlist(name):
            problem = value_problem(declared, value)
            if problem:
                errors[name] = [problem]
                break
    if errors:
        raise ValidationError(errors)


def value_problem(declared: django_filters.Filter, value: str) -> str | None:
    """Why `value` cannot be a value of the filter `declared`, or None."""
    if isinstance(declared, django_filters.CharFilter):
        return None
    if value == "":
        return "Give a value, or leave the parameter out."
    if isinstance(declared, django_filters.BooleanFilter):
        return None if value in ("true", "false") else "Use true or false."
    field = declared.field
    try:
        field.clean([value] if isinstance(field, forms.MultipleChoiceField) else value)
    except forms.ValidationError as refused:
        return " ".join(refused.messages)
    return None
