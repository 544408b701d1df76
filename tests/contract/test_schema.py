"""The schema served at /api/schema/ (fetched with a token, as a CI job would) is valid
OpenAPI 3, and says what a client generator needs: typed JSON bodies, one multipart
operation, errors, a stable operationId and an area tag on every operation."""

import pytest
from openapi_spec_validator import validate

from mlops_portal.core.api.schema import TAGS

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ERROR = {"$ref": "#/components/schemas/Error"}


def operations(schema: dict):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_the_served_schema_validates(portal):
    validate(portal.schema)  # raises, naming the first problem


def test_every_operation_has_a_unique_readable_id_and_an_area_tag(portal):
    ids = [operation["operationId"] for _, _, operation in operations(portal.schema)]
    assert len(ids) == len(set(ids))
    assert all(op_id.replace("_", "").isalpha() and op_id.islower() for op_id in ids), ids
    for path, _, operation in operations(portal.schema):
        assert len(operation["tags"]) == 1 and operation["tags"][0] in TAGS.values(), path
    assert {"Models", "Deployments", "Monitoring", "Incidents", "Docs", "Changes",
            "Metrics"} <= {tag["name"] for tag in portal.schema["tags"]}  # fmt: skip


def test_bodies_are_json_but_the_upload_and_errors_are_documented(portal):
    schema = portal.schema
    multipart = []
    for path, method, operation in operations(schema):
        content = operation.get("requestBody", {}).get("content", {})
        if "multipart/form-data" in content:
            multipart.append(operation["operationId"])
        assert set(content) <= {"application/json", "multipart/form-data"}, path
        responses = operation["responses"]
        for code in ("401", "403"):
            assert responses[code]["content"]["application/json"]["schema"] == ERROR
        if content:
            assert {"400", "409"} <= set(responses), (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
    assert multipart == ["register_model_version"]


def test_every_field_has_a_type(portal):
    untyped = [
        f"{name}.{field}"
        for name, component in portal.schema["components"]["schemas"].items()
        for field, spec in component.get("properties", {}).items()
        if not {"type", "$ref", "allOf", "oneOf", "anyOf"} & set(spec)
    ]
    assert untyped == []


def test_version_fields_have_their_real_types(portal):
    components = portal.schema["components"]["schemas"]
    by_uri = components["ModelVersionByUriRequest"]["properties"]
    assert by_uri["sample_input"]["items"] == {
        "type": "array", "minItems": 1, "items": {"type": "number"}
    }  # fmt: skip
    assert by_uri["metrics"] == {"type": "object", "additionalProperties": {"type": "number"}}
    assert by_uri["params"]["type"] == "object"
    upload = components["ModelVersionUploadRequest"]
    assert upload["properties"]["artifact"] == {"type": "string", "format": "binary"}
    assert set(upload["required"]) == {"artifact"}  # a sample input is optional (README)
    read = components["ModelVersion"]["properties"]
    assert read["artifact"]["nullable"] is True
    assert read["sample_input"]["items"]["items"] == {"type": "number"}
