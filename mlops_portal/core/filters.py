"""Filter pieces shared by every app's filtersets (pages and API alike)."""

import django_filters
from django import forms

from mlops_portal.core.validation import parse_utc_datetime


class UtcDateTimeField(forms.DateTimeField):
    """An ISO 8601 date-time, converted to UTC and range-checked before any query uses it."""

    default_error_messages = {
        "invalid": "Enter an ISO 8601 date-time within the years 1 to 9999, "
        "e.g. 2026-11-27T08:00:00Z."
    }

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return parse_utc_datetime(str(value))
        except ValueError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None


class IntegerFilter(django_filters.NumberFilter):
    """A whole number (a version number): 1.5 is a form error, not "no match"."""

    field_class = forms.IntegerField


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """`since`/`until` style filters on a date-time column (documented as date-time)."""

    field_class = UtcDateTimeField
