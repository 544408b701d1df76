"""Reading an MLflow request: GET parameters from the query string (repeated keys for
lists), every other method from a JSON body; each field checked for MLflow's type."""

import json

from deployments.mlflow_api.errors import invalid

HINT = "See the API docs for more information about request parameters."


class Params:
    """The fields of one request, read and type-checked one at a time."""

    def __init__(self, request):
        if request.method == "GET":
            self.data = {key: _one_or_list(request.GET.getlist(key)) for key in request.GET}
        else:
            self.data = _json_body(request.body)

    def string(self, name, required=False, default="") -> str:
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise invalid(f"Missing value for required parameter '{name}'. {HINT}")
            return default
        if not isinstance(value, str):
            raise _wrong_type(name, value)
        return value

    def optional_string(self, name) -> str | None:
        """None when the field is absent (MLflow's update leaves the field alone then)."""
        return None if self.data.get(name) is None else self.string(name)

    def integer(self, name, default: int) -> int:
        value = self.data.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool) or isinstance(value, float | list | dict):
            raise _wrong_type(name, value)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _wrong_type(name, value) from None

    def boolean(self, name) -> bool:
        value = self.data.get(name, False)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise _wrong_type(name, value)
        return value

    def strings(self, name) -> list[str]:
        value = self.data.get(name) or []
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise _wrong_type(name, value)
        return value

    def tags(self, name="tags") -> dict[str, str]:
        """MLflow's `[{"key": …, "value": …}]` as a dict (a later key wins, as in MLflow)."""
        value = self.data.get(name) or []
        if not isinstance(value, list):
            raise _wrong_type(name, value)
        tags = {}
        for item in value:
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                raise invalid(f"Invalid value {item!r} for parameter '{name}': give key and value.")
            tag_value = item.get("value", "")
            if not isinstance(tag_value, str):
                raise _wrong_type(f"{name}.value", tag_value)
            tags[item["key"]] = tag_value
        return tags

    def version(self, name="version", required=True) -> int:
        text = self.string(name, required=required)
        try:
            number = int(text)
        except ValueError:
            raise invalid(f"Parameter '{name}' must be an integer, got {text!r}.") from None
        return number


def _one_or_list(values: list[str]):
    return values[0] if len(values) == 1 else values


def _json_body(body: bytes) -> dict:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise invalid("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object.")
    return data


def _wrong_type(name, value):
    return invalid(
        f"Invalid value {value!r} for parameter '{name}' supplied: "
        f"Hint: Value was of type '{type(value).__name__}'. {HINT}"
    )
