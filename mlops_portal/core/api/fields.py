"""Serializer fields the apps share, with the JSON types the OpenAPI schema declares for
them, and the check that a JSON body's values have those types."""

from django.http import QueryDict
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.utils import html

from mlops_portal.core.api.parsers import NOT_TEXT_MESSAGE, has_bad_text, loads


class JSONInputField(serializers.JSONField):
    """JSON that may also arrive as a JSON-encoded string (multipart form fields).
    `json_types`: the Python types a JSON body's value must have (None: any)."""

    json_types: tuple | None = None

    def to_internal_value(self, data):
        if isinstance(data, str):
            try:
                data = loads(data)
            except ValueError:
                self.fail("invalid")
            if has_bad_text(data):
                raise serializers.ValidationError(NOT_TEXT_MESSAGE)
        return super().to_internal_value(data)


ROWS_OF_NUMBERS = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "array", "minItems": 1, "items": {"type": "number"}},
    "description": "Rows the model can predict on, e.g. [[5.1, 3.5, 1.4, 0.2]].",
}


@extend_schema_field(ROWS_OF_NUMBERS)
class RowsField(JSONInputField):
    """Rows of numbers: a version's `sample_input`."""

    json_types = (list,)


@extend_schema_field(
    {
        "type": "string",
        "description": "JSON text of rows of numbers, e.g. [[5.1, 3.5, 1.4, 0.2]].",
        "example": "[[5.1, 3.5, 1.4, 0.2]]",
    }
)
class RowsTextField(RowsField):
    """`sample_input` as a multipart part: the rows as JSON text. (A part typed as an array
    would be sent by generated clients as one part per number, losing the rows.)"""


@extend_schema_field({"type": "object", "additionalProperties": {"type": "number"}})
class MetricsField(JSONInputField):
    """Names to numbers: a version's `metrics`, e.g. {"auc": 0.91}."""

    json_types = (dict,)


@extend_schema_field({"type": "object", "additionalProperties": {}})
class JSONObjectField(JSONInputField):
    """Any JSON object: a version's `params`, a target's `backend_settings`."""

    json_types = (dict,)


class TagListField(serializers.ListField):
    """A list of tag names (strings: `[[null]]` is a 400, not a crash). In a multipart form,
    one part per tag or comma-separated tags in a part. Models, versions and pages all use
    this field."""

    child = serializers.CharField(max_length=50)

    def get_value(self, dictionary):
        value = super().get_value(dictionary)
        if html.is_html_input(dictionary) and isinstance(value, list):
            return [tag for part in value for tag in split_tags(part)]
        return value


def split_tags(text: str) -> list[str]:
    return [part for part in text.split(",") if part.strip()]


# --- JSON bodies: the declared type, not what DRF would coerce ---------------------------

# DRF converts generously (a CharField takes 5, an IntegerField "5" or 5.0, a BooleanField
# "yes"), which suits HTML forms. A JSON body is typed: a value of another type than the
# schema declares is refused, so the schema tells clients the whole truth.
JSON_TYPES = [  # the first class the field is an instance of decides
    (serializers.BooleanField, (bool,), "a boolean"),
    (serializers.IntegerField, (int,), "an integer"),
    (serializers.FloatField, (int, float), "a number"),
    (serializers.DecimalField, (int, float), "a number"),
    (serializers.ListField, (list,), "a list"),
    (serializers.DictField, (dict,), "an object"),
    (serializers.CharField, (str,), "a string"),
    (serializers.DateTimeField, (str,), "a string"),
]


def check_json_types(serializer: serializers.Serializer, data) -> None:
    """Raise a 400 naming each field of a JSON body whose value has another JSON type than
    the serializer's field declares (nested by index or key inside lists and objects).
    Multipart and form bodies (a QueryDict of strings) are the fields' own to convert."""
    if not isinstance(data, dict) or isinstance(data, QueryDict):
        return
    errors = {}
    for name, field in serializer.fields.items():
        if name in data and not field.read_only:
            problem = type_problem(field, data[name])
            if problem:
                errors[name] = problem
    if errors:
        raise serializers.ValidationError(errors)


def type_problem(field, value):
    """None when `value` has the type `field` declares; else the messages (a list, or a
    dict by index/key for a list's items or an object's values)."""
    if value is None:  # the field's own allow_null decides
        return None
    expected = json_types(field)
    if expected is None:
        return None
    types, label = expected
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        # DRF's own words where it has them ("Not a valid string."), for scalar fields.
        own = field.error_messages.get("invalid") if list not in types else None
        return [
            own if own and "{" not in own else f"Expected {label}, got {json_type_name(value)}."
        ]
    child = getattr(field, "child", None)
    if isinstance(value, list) and child is not None:
        items = {str(i): type_problem(child, item) for i, item in enumerate(value)}
    elif isinstance(value, dict) and child is not None:
        items = {str(key): type_problem(child, item) for key, item in value.items()}
    else:
        return None
    return {key: problem for key, problem in items.items() if problem} or None


def json_types(field) -> tuple[tuple, str] | None:
    if isinstance(field, JSONInputField):
        if field.json_types is None:
            return None
        return field.json_types, "a list" if list in field.json_types else "an object"
    if isinstance(field, serializers.ChoiceField):
        kinds = {type(key) for key in field.choices}
        if kinds == {str}:
            return (str,), "a string"
        if kinds == {int}:
            return (int,), "an integer"
        return None
    for cls, types, label in JSON_TYPES:
        if isinstance(field, cls):
            return types, label
    return None


def json_type_name(value) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "an object"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


class FieldsBuiltOnce:
    """For the input serializer of a hot write (registering a version): DRF deep-copies
    every declared field for each request, half of what parsing the body cost; this builds
    them once per class and gives each serializer shallow copies, which DRF then binds to it.
    Flat serializers only: a nested serializer keeps per-request state in itself."""

    def get_fields(self):
        built = type(self).__dict__.get("_built_fields")
        if built is None:
            built = super().get_fields()
            if any(isinstance(field, serializers.BaseSerializer) for field in built.values()):
                raise TypeError(f"{type(self).__name__} nests a serializer: not FieldsBuiltOnce")
            type(self)._built_fields = built
        return {name: _shallow_copy(field) for name, field in built.items()}


def _shallow_copy(field):
    """copy.copy(field), without its trip through __reduce_ex__ (a DRF field defines no
    __copy__, so copy.copy makes an empty instance and takes the same __dict__)."""
    clone = object.__new__(type(field))
    clone.__dict__.update(field.__dict__)
    return clone
