"""One search box over every kind, ranked, for logged-in users only."""

import pytest

from deployments import services as registry
from deployments.models import ModelVersion
from docs_app import services as docs
from monitoring.services import incidents


def test_search_finds_each_kind_and_ranks_title_matches_first(client, alice, bob):
    registry.create_model(alice, name="churn", description="Predicts customer churn.")
    registry.create_model(alice, name="fraud", description="Card fraud; churn unrelated.")
    docs.create_page(alice, title="Churn runbook", body="How to roll back churn.")
    docs.create_page(alice, title="Fraud notes", body="Mentions churn once.")
    incidents.open_incident(alice, title="Churn endpoint down")
    client.force_login(bob)
    groups = client.get("/search/?q=churn").context["groups"]
    assert set(groups) == {"models", "pages", "incidents"}
    assert [label for label, _, _ in groups["pages"]] == ["Churn runbook", "Fraud notes"]
    assert [label for label, _, _ in groups["models"]] == ["churn", "fraud"]


def test_search_api_groups_results(api_client_for, alice):
    docs.create_page(alice, title="Rollback guide", body="Roll back from the deployment page.")
    body = api_client_for(alice).get("/api/v1/search/?q=rollback").json()
    assert body["results"]["pages"][0]["url"] == "/docs/rollback-guide/"


def test_search_needs_a_login(client, db):
    assert client.get("/api/v1/search/?q=x").status_code == 401
    assert client.get("/search/?q=x").status_code == 302


def test_one_kind_is_paginated(client, api_client_for, alice):
    for n in range(30):
        docs.create_page(alice, title=f"Retraining note {n}", body="retraining schedule")
    client.force_login(alice)
    first = client.get("/search/?q=retraining&kind=pages")
    assert first.context["page"].paginator.count == 30
    assert len(first.context["groups"]["pages"]) == 25
    api = api_client_for(alice).get("/api/v1/search/?q=retraining&kind=pages&page_size=10").json()
    assert api["count"] == 30 and len(api["results"]) == 10 and api["next"]


def test_a_word_prefix_finds_and_the_index_serves_the_query(client, alice):
    from django.db import connection

    from mlops_portal.overview.search import KINDS_BY_NAME, _ranked, prefix_query

    docs.create_page(alice, title="Churn runbook", body="Rollbacks.")
    client.force_login(alice)
    assert "pages" in client.get("/search/?q=chur").context["groups"]
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a tiny table would be scanned anyway
        plan = _ranked(KINDS_BY_NAME["pages"], "chur").explain()
        cursor.execute("SET enable_seqscan = on")
    assert "page_search_idx" in plan
    assert prefix_query("!!") is None


# --- versions by model name, number and tag ----------------------------------------------

ARTIFACT_URI = "http://127.0.0.1:9/iris.joblib"  # never fetched: validation is not run here


def register(user, model_name, **fields):
    return registry.register_version(
        user, model_name, artifact_uri=ARTIFACT_URI, sample_input=[[5.1, 3.5, 1.4, 0.2]], **fields
    )


@pytest.fixture
def iris_versions(alice):
    """iris-classifier v1 to v11 (v4 tagged "candidate"), iris-regressor v1 and v2, and churn v1,
    whose description names iris-classifier v4."""
    classifier = registry.create_model(alice, name="iris-classifier")
    for number in range(1, 12):
        register(
            alice, classifier.name, tags=["candidate"] if number == 4 else [],
            description=f"Nightly run {100 + number}.",
        )  # fmt: skip
    regressor = registry.create_model(alice, name="iris-regressor")
    for _ in range(2):
        register(alice, regressor.name)
    registry.create_model(alice, name="churn")
    register(alice, "churn", description="Beats iris-classifier v4 on recall.")


def version_labels(client, query):
    return [label for label, _, _ in client.get("/search/", {"q": query}).context["groups"].get(
        "versions", [])]  # fmt: skip


@pytest.mark.usefixtures("iris_versions")
def test_a_version_is_found_by_its_model_name_and_number(client, api_client_for, alice):
    client.force_login(alice)
    # The version itself first; a version that only mentions it after.
    assert version_labels(client, "iris-classifier v4") == ["iris-classifier v4", "churn v1"]
    assert version_labels(client, "iris-classifier 4") == ["iris-classifier v4", "churn v1"]
    assert version_labels(client, "iris-classifier v1")[0] == "iris-classifier v1"
    assert "iris-classifier v10" not in version_labels(client, "iris-classifier v1")
    assert version_labels(client, "IRIS-REGRESSOR V2") == ["iris-regressor v2"]
    found = api_client_for(alice).get("/api/v1/search/", {"q": "iris-classifier v4"}).json()
    assert found["results"]["versions"][0] == {
        "title": "iris-classifier v4",
        "url": "/models/iris-classifier/versions/4/",
        "id": ModelVersion.objects.get(model__name="iris-classifier", number=4).pk,
    }


@pytest.mark.usefixtures("iris_versions")
def test_a_model_name_finds_the_model_then_its_versions_newest_first(client, api_client_for, alice):
    client.force_login(alice)
    groups = client.get("/search/", {"q": "iris-classifier"}).context["groups"]
    assert [label for label, _, _ in groups["models"]] == ["iris-classifier"]
    assert list(groups)[:2] == ["models", "versions"]
    api = api_client_for(alice)
    every = api.get("/api/v1/search/", {"q": "iris-classifier", "kind": "versions"}).json()
    titles = [row["title"] for row in every["results"]]
    assert titles == [f"iris-classifier v{n}" for n in range(11, 0, -1)] + ["churn v1"]


@pytest.mark.usefixtures("iris_versions")
def test_a_tag_finds_its_versions(client, api_client_for, alice):
    client.force_login(alice)
    assert version_labels(client, "candidate") == ["iris-classifier v4"]
    assert version_labels(client, "iris candidate") == ["iris-classifier v4"]
    found = api_client_for(alice).get("/api/v1/search/", {"q": "candidate"}).json()
    assert [row["title"] for row in found["results"]["versions"]] == ["iris-classifier v4"]


@pytest.mark.usefixtures("iris_versions")
def test_the_version_search_is_served_by_its_indexes():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from mlops_portal.overview.search import _ranked_versions

    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # tiny tables would be scanned anyway
        with CaptureQueriesContext(connection) as models_query:
            versions = _ranked_versions("iris-classifier v4")
        version_plan = versions.explain()
        cursor.execute(f"EXPLAIN {models_query.captured_queries[0]['sql']}")
        model_plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET enable_seqscan = on")
    assert "version_search_idx" in version_plan
    assert "model_name_search_idx" in model_plan
    assert "Seq Scan" not in version_plan + model_plan


@pytest.mark.usefixtures("iris_versions")
def test_the_plain_match_of_sqlite_finds_versions_the_same_way():
    from mlops_portal.overview.search import _versions_matching_plainly

    def labels(*words):
        return [str(version) for version in _versions_matching_plainly(list(words))]

    assert labels("iris", "classifier", "v4") == ["iris-classifier v4"]
    assert labels("iris", "classifier", "1") == ["churn v1", "iris-classifier v1"]  # no v10
    assert labels("candidate") == ["iris-classifier v4"]
    assert labels("regressor") == ["iris-regressor v2", "iris-regressor v1"]
