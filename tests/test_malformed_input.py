"""A malformed-input corpus sent to every write endpoint and every list filter of the API.

The operations come from the OpenAPI schema (`/api/schema/`), so an endpoint added later is
covered without touching this file. Each request must end in a 2xx or a 4xx, never a 5xx,
and a refused request must leave every table as it was (nothing half-written)."""

import json
from datetime import timedelta, timezone

import psycopg
import pytest
from django.apps import apps
from django.db import connection
from drf_spectacular.generators import SchemaGenerator

from deployments import services as registry
from docs_app import services as docs
from mlops_portal.core.validation import parse_utc_datetime
from monitoring.models import HealthCheck
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
    ("application/json", b""),
    ("application/json", b"[]"),
    ("application/json", b"42"),
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


def transaction_aborted() -> bool:
    status = connection.connection.info.transaction_status
    return status == psycopg.pq.TransactionStatus.INERROR


class Checker:
    """Sends requests and notes every 5xx, and every refusal that changed a row. The row
    counts are read once per request: after it, compared with those after the one before."""

    def __init__(self, client):
        self.client = client
        self.counts = row_counts()
        self.sent = 0
        self.problems: list[str] = []
        self.aborted = False

    def send(self, method, url, label, count_rows=True, **kwargs):
        if self.aborted:
            return
        response = getattr(self.client, method)(url, **kwargs)
        self.sent += 1
        if response.status_code >= 500:
            self.problems.append(f"{label}: {response.status_code}")
        if transaction_aborted():
            # A statement the database refused aborts the test's transaction: nothing more
            # can be checked in it (a savepoint per request would double the round trips).
            self.problems.append("(stopped: the request above aborted the transaction)")
            self.aborted = True
            return
        counts = row_counts() if count_rows else self.counts
        if 400 <= response.status_code < 500 and counts != self.counts:
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
                label = f"GET {url}?{name}={value[:40]}"
                checker.send("get", f"{url}?{name}={value}", label, count_rows=False)
    checker.assert_no_problems()
    assert row_counts() == checker.counts  # reading wrote nothing
    assert checker.sent > 200


# --- what each refusal says ----------------------------------------------------------------


def test_deep_nesting_is_a_400_before_parsing(api_client_for, bob, world):
    response = api_client_for(bob).post(
        "/api/v1/incidents/", data=DEEP, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "JSON parse error - nested deeper than 64 levels."}


def test_nesting_within_the_limit_is_parsed(api_client_for, alice, world):
    nested = json.loads("[" * 60 + "]" * 60)
    response = api_client_for(alice).patch(
        "/api/v1/models/iris/", {"description": "ok", "tags": nested}, format="json"
    )
    assert response.status_code == 400
    assert "tags" in response.json()  # refused by the field, not by the parser


def test_a_body_that_is_not_utf8_is_a_400(api_client_for, bob, world):
    response = api_client_for(bob).post(
        "/api/v1/incidents/", data=b'{"title": "\xff"}', content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "JSON parse error - the body is not UTF-8 text."}


@pytest.mark.parametrize(
    ("url", "method"),
    [
        ("/api/v1/models/", "post"),
        ("/api/v1/models/iris/", "patch"),
        ("/api/v1/models/iris/versions/1/", "patch"),
        ("/api/v1/pages/", "post"),
    ],
)
def test_tags_must_be_a_list_of_strings(api_client_for, bob, world, url, method):
    api = api_client_for(bob)
    before = row_counts()
    body = {"name": "other", "title": "Other", "tags": [[None, None]]}
    response = getattr(api, method)(url, body, format="json")
    assert response.status_code == 400
    assert response.json()["tags"] == {"0": ["Not a valid string."]}
    assert row_counts() == before


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/v1/incidents/", {"title": "Slow", "severity": "\ud800"}, "severity"),
        ("/api/v1/targets/", {"name": "t", "environment": "\ud800"}, "environment"),
        (
            "/api/v1/checks/",
            {"name": "c", "url": "http://127.0.0.1/", "method": "\ud800"},
            "method",
        ),
        ("/api/v1/incidents/", {"title": "nul\x00"}, "title"),
    ],
)
def test_text_that_is_not_unicode_is_a_400_naming_the_field(
    api_client_for, bob, world, url, body, field
):
    api = api_client_for(bob)
    before = row_counts()
    # json.dumps escapes the surrogate as \ud800, as a client would send it.
    response = api.post(url, json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {field: ["Text must be valid Unicode without NUL characters."]}
    assert row_counts() == before


@pytest.mark.parametrize(
    "url",
    ["/api/v1/deployments/", "/api/v1/incidents/", "/api/v1/changes/", "/api/v1/checks/1/results/"],
)
@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "2026-13-45T00:00:00"]
)
def test_an_out_of_range_date_filter_is_a_400_naming_it(api_client_for, bob, world, url, value):
    url = url.replace("/1/", f"/{world['id']['checks']}/")
    response = api_client_for(bob).get(url, {"since": value})
    assert response.status_code == 400
    assert list(response.json()) == ["since"]


@pytest.mark.parametrize("url", ["/api/v1/deployments/", "/api/v1/incidents/", "/api/v1/changes/"])
def test_an_offset_postgresql_cannot_store_is_read_as_its_moment(api_client_for, bob, world, url):
    """-19:33 is a real offset (Python takes up to ±23:59) that PostgreSQL refuses (±15:59):
    converted to UTC first, it filters like any other moment."""
    response = api_client_for(bob).get(url, {"since": "2100-01-01T00:00:00-19:33"})
    assert response.status_code == 200
    assert response.json()["count"] == 0  # nothing happened after 2100-01-01T19:33Z


def test_a_date_filter_with_an_offset_means_that_moment(api_client_for, bob, world):
    api = api_client_for(bob)
    created = api.get("/api/v1/deployments/").json()["results"][0]["created_at"]
    moment = parse_utc_datetime(created).astimezone(timezone(timedelta(hours=-15, minutes=-59)))
    assert api.get("/api/v1/deployments/", {"since": moment.isoformat()}).json()["count"] == 1
    later = (moment + timedelta(seconds=1)).isoformat()
    assert api.get("/api/v1/deployments/", {"since": later}).json()["count"] == 0


def test_a_snooze_reason_over_300_characters_is_a_400(api_client_for, bob, world):
    check = world["id"]["checks"]
    response = api_client_for(bob).post(
        f"/api/v1/checks/{check}/snooze/", {"hours": 1, "reason": "x" * 301}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"reason": ["Ensure this field has no more than 300 characters."]}
    assert HealthCheck.objects.get(pk=check).snoozed_until is None
