"""A malformed-input corpus sent to every write endpoint and every list filter of the API.

The operations come from the OpenAPI schema (`/api/schema/`), so an endpoint added later is
covered without touching this file. Each request must end in a 2xx or a 4xx, never a 5xx,
and a refused request must leave every table as it was (nothing half-written)."""

import json

import pytest
from django.apps import apps
from django.db import connection, transaction
from drf_spectacular.generators import SchemaGenerator

from deployments import services as registry
from docs_app import services as docs
from monitoring.services import checks, incidents
from tests.factories import register_iris_version, validated

WRITE_METHODS = ("post", "patch", "put")
APPS = ("mlops_portal", "deployments", "monitoring", "docs_app", "auditlog")

HUGE = "x" * 100_000
DEEP = "[" * 1000 + "]" * 1000
BAD_DATES = [
    "2026-01-01T00:00:00-19:33",  # an offset PostgreSQL cannot store
    "2026-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00+05:00",  # before datetime.min once in UTC
    "9999-12-31T23:59:59-05:00",  # after datetime.max once in UTC
    "2026-13-45T99:99:99",
]
# Values put into every field of a body, one field at a time.
FIELD_VALUES = [
    None,
    -1,
    10**30,
    HUGE,
    "\ud800",  # a lone surrogate: valid JSON escape, not valid UTF-8 text
    [[None, None]],
    {"a": "nul\x00"},
    BAD_DATES[0],
]
# Whole bodies: (content type, raw bytes).
RAW_BODIES = [
    ("application/json", DEEP.encode()),
    ("application/json", ('{"a": ' + DEEP + "}").encode()),
    ("application/json", b'{"name": "\xff\xfe\xfd"}'),  # not UTF-8
    ("application/json", b'{"name": "\\ud800"}'),
    ("application/json", b"{"),
    ("application/json", b""),
    ("application/json", b"[]"),
    ("application/json", b'"text"'),
    ("application/json", b"42"),
    ("application/json", b"null"),
    ("application/json", b'{"a": NaN}'),
    ("application/json", b"\x00"),
    ("application/x-www-form-urlencoded", b"name=%ED%A0%80&title=%FF%FE&reason=%00"),
    ("multipart/form-data; boundary=xx", b"--xx\r\nContent-Disposition: form-data\r\n\r\n"),
]
QUERY_VALUES = ["%ED%A0%80", "%FF", "%00", "x" * 5000, "-1", "[]", *BAD_DATES]


def operations():
    """(method, path template, body properties, query parameter names) for every operation
    of the API schema; body properties map each field to its schema."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]

    def resolve(node):
        while "$ref" in node or "allOf" in node:
            node = node["allOf"][0] if "allOf" in node else node
            if "$ref" in node:
                node = components[node["$ref"].rsplit("/", 1)[1]]
        return node

    found = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            content = operation.get("requestBody", {}).get("content", {})
            body = resolve(content.get("application/json", {}).get("schema", {}))
            properties = {name: resolve(node) for name, node in body.get("properties", {}).items()}
            query = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            found.append((method, path, properties, query))
    return found


def example(node):
    """A plausible valid value for a field described by the schema `node`."""
    if node.get("enum"):
        return node["enum"][0]
    kind = node.get("type")
    if kind == "array":
        return [example(node.get("items", {}))]
    if kind == "object":
        return {}
    if kind == "string" and node.get("format") == "date-time":
        return "2026-01-01T00:00:00Z"
    return {"integer": 1, "number": 1.0, "boolean": True}.get(kind, "x")


def row_counts() -> dict[str, int]:
    """The number of rows of every table of ours, in one statement."""
    tables = sorted(
        model._meta.db_table
        for label in APPS
        for model in apps.get_app_config(label).get_models()
        if model._meta.managed and not model._meta.proxy
    )
    select = ", ".join(f'(SELECT count(*) FROM "{table}")' for table in tables)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {select}")
        return dict(zip(tables, cursor.fetchone(), strict=True))


@pytest.fixture
def world(alice, bob):
    """One object of each kind, so every path with an id or name points at something."""
    model = registry.create_model(alice, name="iris", team="botany", tags=["flowers"])
    version = validated(register_iris_version(alice, model))
    target = registry.create_target(bob, name="iris-production", environment="production")
    deployment = registry.request_deployment(alice, version=version, target=target, reason="go")
    check = checks.create_check(bob, name="iris health", url="http://127.0.0.1:9/health")
    incident = incidents.open_incident(bob, title="Iris is slow", target=target)
    page = docs.create_page(alice, title="Iris runbook", body="Restart it.")
    return {
        "name": model.name,
        "model_name": model.name,
        "version": str(version.number),
        "figure": "deployments",
        "slug": page.slug,
        "id": {
            "checks": check.pk,
            "deployments": deployment.pk,
            "incidents": incident.pk,
            "tokens": 1,
        },
        "target": target.name,
    }


def concrete(path: str, world) -> str:
    """The path template with the world's objects filled in."""
    resource = path.split("/")[3]
    path = path.replace("{id}", str(world["id"].get(resource, 1)))
    if resource == "targets":
        path = path.replace("{name}", world["target"])
    for key in ("name", "model_name", "version", "figure", "slug"):
        path = path.replace("{" + key + "}", world[key])
    return path


def bodies(properties, field_values):
    """(content type, bytes) for every malformed body sent to one operation: the raw ones,
    then a plausible body with one field at a time replaced by each bad value."""
    yield from RAW_BODIES
    base = {name: example(node) for name, node in properties.items()}
    for name in properties or ["name"]:
        for value in field_values:
            yield "application/json", json.dumps({**base, name: value}).encode()


class Checker:
    """Sends requests and notes every 5xx, and every refusal that changed a row. The row
    counts are read once per request: after it, compared with those after the one before."""

    def __init__(self, client):
        self.client = client
        self.counts = row_counts()
        self.sent = 0
        self.problems: list[str] = []

    def send(self, method, url, label, **kwargs):
        # A statement the database refused (the 500s this test looks for) aborts the test's
        # transaction; rolling back to a savepoint keeps the next requests meaningful.
        savepoint = transaction.savepoint()
        response = getattr(self.client, method)(url, **kwargs)
        if response.status_code >= 500:
            transaction.savepoint_rollback(savepoint)
        else:
            transaction.savepoint_commit(savepoint)
        counts = row_counts()
        self.sent += 1
        if response.status_code >= 500:
            self.problems.append(f"{label}: {response.status_code}")
        elif response.status_code >= 400 and counts != self.counts:
            self.problems.append(f"{label}: refused with {response.status_code}, rows changed")
        self.counts = counts

    def assert_no_problems(self):
        assert not self.problems, "\n".join(self.problems)


def client_of(request, api_client_for, persona):
    client = api_client_for(request.getfixturevalue(persona))
    client.raise_request_exception = False  # a crash is a 500 answer to count, not an error
    return client


# The engineer gets the whole corpus; the superuser (who passes every role check) a shorter
# one, to keep the module fast.
@pytest.mark.parametrize(
    ("persona", "field_values"),
    [("bob", FIELD_VALUES), ("admin_user", [HUGE, "\ud800", [[None, None]]])],
)
def test_no_write_endpoint_answers_500_or_half_writes(
    request, api_client_for, world, persona, field_values
):
    checker = Checker(client_of(request, api_client_for, persona))
    for method, path, properties, _ in operations():
        if method not in WRITE_METHODS:
            continue
        url = concrete(path, world)
        for content_type, raw in bodies(properties, field_values):
            label = f"{method.upper()} {url} {raw[:100]!r}"
            checker.send(method, url, label, data=raw, content_type=content_type)
    checker.assert_no_problems()
    assert checker.sent > 300  # the schema was read: every write endpoint got the corpus


@pytest.mark.parametrize("persona", ["bob", "admin_user"])
def test_no_list_filter_answers_500(request, api_client_for, world, persona):
    checker = Checker(client_of(request, api_client_for, persona))
    for method, path, _, query in operations():
        if method != "get" or not query:
            continue
        url = concrete(path, world)
        for name in query:
            for value in QUERY_VALUES:
                checker.send("get", f"{url}?{name}={value}", f"GET {url}?{name}={value[:40]}")
    checker.assert_no_problems()
    assert checker.sent > 200
