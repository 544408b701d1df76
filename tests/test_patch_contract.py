"""PATCH changes exactly the fields sent, on every PATCH operation of the API.

The operations and their fields come from the OpenAPI schema, so a PATCH added later (or a
new field of one) fails `test_every_patch_field_has_a_case` until it gets a case here."""

import pytest
from drf_spectacular.generators import SchemaGenerator

from deployments import services as registry
from docs_app import services as docs
from monitoring.services import alerts, checks
from tests.factories import register_iris_version

# Fields of a PATCH that are not the object's data: the optimistic lock of pages.
CONTROL_FIELDS = {"base_revision"}
# Representation fields that every write moves on.
VOLATILE = {"updated_at", "updated_by", "revision_number"}
# Fields computed from the one sent: a heartbeat's deadline moves with its period and grace,
# an alert rule's condition (its one-line summary) with its parts.
DERIVED = {
    **{key: {"ping_deadline"} for key in ("period_seconds", "grace_seconds",
                                          "cron_expression", "cron_timezone")},
    **{key: {"condition"} for key in ("metric", "comparison", "threshold", "for_minutes",
                                      "feature")},
}  # fmt: skip

# path template -> {field: a valid value that differs from the object built by `world`}.
CASES = {
    "/api/v1/models/{name}/": {
        "description": "Predicts iris species.",
        "team": "flora",
        "tags": ["petals"],
    },
    "/api/v1/models/{model_name}/versions/{version}/": {
        "description": "Retrained on more data.",
        "tags": ["candidate"],
        "archived": True,
    },
    "/api/v1/targets/{name}/": {
        "environment": "staging",
        "backend_settings": {"startup_timeout_seconds": 30},
        "requires_approval": False,
        "rollback_skips_approval": True,
        "auto_rollback": True,
        "verification_window_seconds": 120,
        "queue_policy": "queue",
        "description": "The production cluster.",
    },
    "/api/v1/checks/{id}/": {
        "name": "iris health (renamed)",
        "url": "http://127.0.0.1:9/ready",
        "method": "HEAD",
        "interval_seconds": 60,
        "timeout_seconds": 2.5,
        "expected_statuses": [200, 204],
        "latency_threshold_ms": 250.0,
        "failures_before_down": 5,
    },
    # Period and grace belong to heartbeat checks only: a second object on the same path.
    "/api/v1/checks/{id}/#heartbeat": {
        "name": "nightly training (renamed)",
        "period_seconds": 7200,
        "grace_seconds": 900,
    },
    "/api/v1/checks/{id}/#cron": {"cron_expression": "30 3 * * *", "cron_timezone": "Asia/Tokyo"},
    "/api/v1/alert-rules/{id}/": {
        "name": "iris latency (renamed)",
        "metric": "error_rate",
        "comparison": "<",
        "threshold": 750.0,
        "for_minutes": 15,
        "severity": "sev1",
        "enabled": False,
    },
    "/api/v1/alert-rules/{id}/#drift": {"feature": "petal_width"},
    "/api/v1/pages/{slug}/": {
        "title": "Iris runbook v2",
        "body": "Restart it, then check the logs.",
        "tags": ["oncall"],
        "parent": None,
        "linked_models": [],
        "linked_targets": [],
        "summary": "Reworded.",
    },
}


def patch_operations() -> dict[str, set[str]]:
    """{path template: body field names} for every PATCH operation of the schema."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    found = {}
    for path, methods in schema["paths"].items():
        if "patch" not in methods:
            continue
        content = methods["patch"].get("requestBody", {}).get("content", {})
        ref = content["application/json"]["schema"]["$ref"]
        body = components[ref.rsplit("/", 1)[1]]
        found[path] = set(body["properties"]) - CONTROL_FIELDS
    return found


def test_every_patch_field_has_a_case(db):
    cases = {}
    for template, fields in CASES.items():  # "path#variant" adds to the path's cases
        cases.setdefault(template.split("#")[0], set()).update(fields)
    assert patch_operations() == cases


@pytest.fixture
def world(alice, bob):
    """One object per PATCH operation, every field set to something a PATCH could lose."""
    model = registry.create_model(alice, name="iris", team="botany", tags=["flowers"],
                                  description="Iris classifier.")  # fmt: skip
    version = register_iris_version(alice, model, tags=["baseline"], description="First.")
    target = registry.create_target(
        bob, name="iris-production", environment="production", auto_rollback=False,
        verification_window_seconds=45, description="Prod.",
    )  # fmt: skip
    check = checks.create_check(
        bob, name="iris health", url="http://127.0.0.1:9/health", target=target,
        interval_seconds=45, expected_statuses=[200], latency_threshold_ms=900.0,
    )  # fmt: skip
    heartbeat = checks.create_check(
        bob, name="nightly training", kind="heartbeat", period_seconds=86400, grace_seconds=600,
    )  # fmt: skip
    rule = alerts.create_rule(
        bob, name="iris latency", model=model, metric="latency_p95", threshold=500.0,
        for_minutes=5, severity="sev3",
    )  # fmt: skip
    drift_rule = alerts.create_rule(
        bob, name="iris petal drift", model=model, metric="drift_feature",
        feature="petal_length", threshold=0.25, for_minutes=60,
    )  # fmt: skip
    scheduled = checks.create_check(
        bob, name="nightly scoring", kind="heartbeat", cron_expression="0 2 * * *",
        cron_timezone="Europe/Paris", grace_seconds=600,
    )  # fmt: skip
    parent = docs.create_page(alice, title="Runbooks")
    page = docs.create_page(
        alice, title="Iris runbook", body="Restart it.", tags=["runbook"], parent=parent,
        linked_models=[model], linked_targets=[target],
    )  # fmt: skip
    return {
        "/api/v1/models/{name}/": f"/api/v1/models/{model.name}/",
        "/api/v1/models/{model_name}/versions/{version}/": (
            f"/api/v1/models/{model.name}/versions/{version.number}/"
        ),
        "/api/v1/targets/{name}/": f"/api/v1/targets/{target.name}/",
        "/api/v1/checks/{id}/": f"/api/v1/checks/{check.pk}/",
        "/api/v1/checks/{id}/#heartbeat": f"/api/v1/checks/{heartbeat.pk}/",
        "/api/v1/checks/{id}/#cron": f"/api/v1/checks/{scheduled.pk}/",
        "/api/v1/alert-rules/{id}/": f"/api/v1/alert-rules/{rule.pk}/",
        "/api/v1/alert-rules/{id}/#drift": f"/api/v1/alert-rules/{drift_rule.pk}/",
        "/api/v1/pages/{slug}/": f"/api/v1/pages/{page.slug}/",
    }


@pytest.mark.parametrize(
    "template, field",
    [(template, field) for template, fields in CASES.items() for field in fields],
)
def test_a_patch_of_one_field_changes_that_field_only(
    template, field, world, admin_user, api_client_for
):
    api = api_client_for(admin_user)
    url = world[template]
    before = api.get(url).json()
    body = {field: CASES[template][field]}
    if "revision_number" in before:
        body["base_revision"] = before["revision_number"]
    response = api.patch(url, body, format="json")
    assert response.status_code == 200, response.content
    after = api.get(url).json()
    assert response.json() == after
    moved = VOLATILE | {field} | DERIVED.get(field, set())
    unchanged = {name for name in before if name not in moved}
    assert {name: after[name] for name in unchanged} == {name: before[name] for name in unchanged}
    if field in before:
        assert after[field] != before[field], f"{field} was sent but did not change"
