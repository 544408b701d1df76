from rest_framework import serializers

from mlops_portal.core.api.parsers import NOT_TEXT_MESSAGE, has_bad_text, loads


class JSONInputField(serializers.JSONField):
    """JSON that may also arrive as a JSON-encoded string (multipart form fields)."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            try:
                data = loads(data)
            except ValueError:
                self.fail("invalid")
            if has_bad_text(data):
                raise serializers.ValidationError(NOT_TEXT_MESSAGE)
        return super().to_internal_value(data)


class TagListField(serializers.ListField):
    """A list of tag names (strings: `[[null]]` is a 400, not a crash); in multipart forms
    also one comma-separated string. Models, versions and pages all use this field."""

    child = serializers.CharField(max_length=50)

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = split_tags(data)
        elif isinstance(data, list) and len(data) == 1 and isinstance(data[0], str):
            data = split_tags(data[0])
        return super().to_internal_value(data)


def split_tags(text: str) -> list[str]:
    return [part for part in text.split(",") if part.strip()]
