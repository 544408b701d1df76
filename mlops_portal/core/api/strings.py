"""Text fields keep the length the schema promises.

DRF trims surrounding whitespace first and checks `max_length` on what is left, so a
301-character string that starts with a space passed a field whose schema says
`maxLength: 300` (schemathesis found it on an alert rule's mute reason). After `install()`,
every CharField also refuses a value whose length as sent is over its `max_length`; the
trimmed value is what is stored, as before."""

from rest_framework import fields

_trimming_to_internal_value = fields.CharField.to_internal_value


def _to_internal_value_within_max_length(field, data):
    value = _trimming_to_internal_value(field, data)
    if field.max_length is not None and isinstance(data, str) and len(data) > field.max_length:
        field.fail("max_length", max_length=field.max_length)
    return value


def install() -> None:
    fields.CharField.to_internal_value = _to_internal_value_within_max_length
