"""Change records: every kind of domain object, who and when, old → new, never secrets."""

from auditlog.models import LogEntry

from deployments import services as deploy
from docs_app import services as docs
from monitoring.services import checks, incidents
from tests.factories import register_iris_version, validated

SECRET = "a-very-secret-signing-key"


def records(kind):
    app_label, model = kind.split(".")
    return LogEntry.objects.filter(
        content_type__app_label=app_label, content_type__model=model
    ).order_by("pk")


def test_each_kind_is_recorded_with_old_and_new_values(alice, bob):
    model = deploy.create_model(alice, name="churn", team="growth")
    deploy.update_model(alice, model, team="retention")
    version = validated(register_iris_version(alice, model))
    target = deploy.create_target(bob, name="churn-stage", environment="staging")
    deployment = deploy.request_deployment(alice, version=version, target=target, reason="try")
    check = checks.create_check(bob, name="churn", url="http://127.0.0.1:9/health")
    checks.update_check(bob, check, interval_seconds=60)
    incident = incidents.open_incident(alice, title="slow")
    incidents.acknowledge(bob, incident)
    page = docs.create_page(alice, title="Churn notes")
    docs.save_page(bob, page, base_revision=1, title="Churn notes v2", body="x")

    assert records("deployments.registeredmodel").last().changes["team"] == ["growth", "retention"]
    assert records("deployments.modelversion").last().changes == {"status": ["validating", "ready"]}
    assert records("deployments.target").first().action == LogEntry.Action.CREATE
    assert records("deployments.deployment").last().changes == {"state": ["approved", "queued"]}
    assert records("monitoring.healthcheck").last().changes["interval_seconds"] == ["30", "60"]
    ack = records("monitoring.incident").last()
    assert (ack.changes, ack.actor) == ({"state": ["open", "acknowledged"]}, bob)
    assert records("docs_app.page").last().changes["title"] == ["Churn notes", "Churn notes v2"]
    assert deployment.pk


def test_secrets_never_appear_in_change_records(bob):
    target = deploy.create_target(
        bob, name="cd", environment="staging", backend="webhook",
        backend_settings={"url": "https://cd.example/hook", "secret": SECRET},
    )  # fmt: skip
    deploy.update_target(
        bob, target, backend_settings={"url": "https://cd.example/v2", "secret": SECRET + "2"}
    )
    change = records("deployments.target").last()
    assert change.changes["backend_settings"][1] == str(
        {"url": "https://cd.example/v2", "secret": "********"}
    )
    for entry in LogEntry.objects.all():
        assert SECRET not in str(entry.changes) and SECRET not in entry.object_repr


def test_the_feed_names_api_callers_and_filters_by_user_kind_and_object(
    api_client_for, client, alice, bob
):
    api = api_client_for(alice)
    api.post("/api/v1/models/", {"name": "churn"}, format="json")
    api.patch("/api/v1/models/churn/", {"team": "growth"}, format="json")
    incidents.open_incident(bob, title="other")
    feed = api.get("/api/v1/changes/?user=alice&kind=deployments.registeredmodel").json()
    assert [(c["action"], c["actor"]) for c in feed["results"]] == [
        ("updated", "alice"), ("created", "alice"),
    ]  # fmt: skip
    assert feed["results"][0]["changes"]["team"] == ["", "growth"]
    client.force_login(bob)
    model_page = client.get("/models/churn/").content.decode()
    assert "/changes/?kind=deployments.registeredmodel&amp;object=" in model_page
    page = client.get("/changes/?kind=monitoring.incident").content.decode()
    assert "other" in page and "churn" not in page


def test_the_change_page_reads_as_words_not_as_a_database_dump(client, alice, bob):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from deployments import services as deploy
    from docs_app import services as docs
    from tests.factories import register_iris_version, validated

    model = deploy.create_model(alice, name="iris", team="botany")
    version = validated(register_iris_version(alice, model))
    target = deploy.create_target(bob, name="iris-staging", environment="staging")
    deploy.request_deployment(alice, version=version, target=target, reason="try")
    docs.create_page(alice, title="Iris runbook", body="# Steps")
    client.force_login(bob)

    def page():
        with CaptureQueriesContext(connection) as queries:
            html = client.get("/changes/").content.decode()
        return html, len(queries)

    html, few = page()
    html = html.split('data-testid="changes"')[1]  # the table (the filter names kinds' keys)
    assert "created Doc page <strong>Iris runbook</strong>" in html
    assert "docs_app.page" not in html and "deployments.deployment" not in html
    assert "None → None" not in html and "None" not in html
    assert "Requested by: alice" in html  # a name, not a user id
    assert "Target: iris-staging" in html and "Version: iris v1" in html
    assert "State: Requested → Approved" in html  # choice labels
    assert "Requires approval: no" in html
    for number in range(2, 6):  # more rows of the same kinds: no more queries
        version = validated(register_iris_version(alice, model))
        deploy.request_deployment(alice, version=version, target=target, reason=f"v{number}")
    assert page()[1] == few
