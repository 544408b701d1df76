import json

from rest_framework import serializers


class JSONInputField(serializers.JSONField):
    """JSON that may also arrive as a JSON-encoded string (multipart form fields)."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                self.fail("invalid")
        return super().to_internal_value(data)


class TagListField(serializers.ListField):
    """A list of tag names; in multipart forms also one comma-separated string."""

    child = serializers.CharField(max_length=50)

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = [part for part in data.split(",") if part.strip()]
        elif isinstance(data, list) and len(data) == 1 and "," in str(data[0]):
            data = [part for part in data[0].split(",") if part.strip()]
        return super().to_internal_value(data)
