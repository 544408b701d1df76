"""Aliases in the portal: set and removed through one service, shown and edited on the
model page, listed on versions in /api/v1/ and set there; each change on the timeline."""

import pytest
from auditlog.models import LogEntry

from deployments.choices import VersionEventKind
from deployments.models import ModelAlias, VersionEvent
from deployments.services import aliases
from tests.factories import register_iris_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_versions(churn, alice):
    return [register_iris_version(alice, churn) for _ in range(2)]


def test_setting_an_alias_moves_it_and_records_who(churn, alice, two_versions):
    aliases.set_alias(alice, churn, "champion", 1)
    aliases.set_alias(alice, churn, "champion", 2)
    assert ModelAlias.objects.get().version == two_versions[1]
    event = VersionEvent.objects.get(version=two_versions[1], kind=VersionEventKind.ALIAS_SET)
    assert (event.actor, event.message) == (alice, "Alias @champion set (was v1).")
    assert LogEntry.objects.filter(content_type__model="modelalias").count() == 2


def test_reserved_and_malformed_aliases_are_refused(churn, alice, two_versions):
    from django.core.exceptions import ValidationError

    for bad in ("latest", "v3", "two words", ""):
        with pytest.raises(ValidationError):
            aliases.set_alias(alice, churn, bad, 1)
    assert not ModelAlias.objects.exists()


def test_the_model_page_shows_and_edits_aliases(client, churn, alice, carol, two_versions):
    client.force_login(alice)
    response = client.post("/models/churn/aliases/", {"alias": "champion", "version": "2"})
    assert response.status_code == 302
    page = client.get("/models/churn/").content.decode()
    assert "@champion" in page and "Set alias" in page
    client.post("/models/churn/aliases/", {"alias": "champion", "remove": "1"})
    assert not ModelAlias.objects.exists()
    client.force_login(carol)
    assert "Set alias" not in client.get("/models/churn/").content.decode()


def test_the_page_says_when_the_version_does_not_exist(client, churn, alice, two_versions):
    client.force_login(alice)
    response = client.post("/models/churn/aliases/", {"alias": "x", "version": "9"}, follow=True)
    assert "has no version" in response.content.decode()
    assert not ModelAlias.objects.exists()


def test_the_api_sets_lists_and_removes_aliases(churn, alice, api_client_for, two_versions):
    api = api_client_for(alice)
    response = api.post(
        "/api/v1/models/churn/aliases/", {"alias": "champion", "version": 1}, format="json"
    )
    assert response.status_code == 200
    listed = api.get("/api/v1/models/churn/versions/").json()["results"]
    assert {row["version"]: row["aliases"] for row in listed} == {2: [], 1: ["champion"]}
    assert api.get("/api/v1/models/churn/versions/1/").json()["aliases"] == ["champion"]
    missing = api.post("/api/v1/models/churn/aliases/", {"alias": "x", "version": 9}, format="json")
    assert missing.status_code == 404
    assert api.delete("/api/v1/models/churn/aliases/champion/").status_code == 204
    assert not ModelAlias.objects.exists()


def test_the_versions_list_reads_aliases_in_one_query(
    churn, alice, api_client_for, two_versions, django_assert_max_num_queries
):
    api = api_client_for(alice)
    api.get("/api/v1/models/churn/versions/")
    aliases.set_alias(alice, churn, "champion", 1)
    aliases.set_alias(alice, churn, "challenger", 2)
    with django_assert_max_num_queries(2):  # token; the rows with their count and aliases
        api.get("/api/v1/models/churn/versions/")


def test_a_deploy_request_may_name_the_version_by_alias(churn, alice, bob, api_client_for):
    from deployments import services
    from deployments.models import Deployment
    from tests.factories import validated

    versions = [validated(register_iris_version(alice, churn)) for _ in range(2)]
    services.create_target(bob, name="staging", environment="staging")
    aliases.set_alias(alice, churn, "champion", 1)
    api = api_client_for(alice)
    body = {"model": "churn", "alias": "champion", "target": "staging", "reason": "try"}
    response = api.post("/api/v1/deployments/", body, format="json")
    assert response.status_code == 201, response.json()
    assert Deployment.objects.get().version == versions[0]
    unknown = api.post("/api/v1/deployments/", {**body, "alias": "nope"}, format="json")
    assert unknown.status_code == 400 and "alias" in unknown.json()  # names the field
    both = api.post("/api/v1/deployments/", {**body, "version": 2}, format="json")
    assert both.status_code == 400 and "version" in both.json()


def test_the_version_page_shows_its_aliases_stage_and_mlflow_fields(
    client, churn, alice, artifact_server
):
    from deployments import services

    services.register_version(
        alice, "churn", artifact_uri=f"{artifact_server}/model.joblib", run_id="run-7",
        mlflow_tags={"owner_team": "growth"},
    )  # fmt: skip
    aliases.set_alias(alice, churn, "champion", 1)
    aliases.transition_stage(alice, churn.versions.get(), "staging")
    client.force_login(alice)
    page = client.get("/models/churn/versions/1/").content.decode()
    for shown in ("@champion", "Staging", "run-7", "owner_team=growth"):
        assert shown in page, shown
