"""The registry's REST API as scripts and CI pipelines use it."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from deployments import services
from deployments.choices import VersionStatus
from deployments.models import ModelVersion, VersionEvent
from mlops_portal.core import tokens as account_services
from tests.factories import iris_artifact, register_iris_version

MODELS = "/api/v1/models/"


def versions_url(name="churn"):
    return f"{MODELS}{name}/versions/"


# --- authentication and roles --------------------------------------------------------


def test_a_bad_token_gets_401(client, db):
    response = client.get(MODELS, headers={"Authorization": "Token mlp_wrong"})
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or revoked token."}


def test_viewers_read_but_cannot_write(api_client_for, carol, churn):
    api = api_client_for(carol)
    assert api.get(MODELS).json()["count"] == 1
    response = api.post(MODELS, {"name": "mine"}, format="json")
    assert response.status_code == 403
    assert "Only data scientists or MLOps engineers may create models" in response.json()["detail"]
    response = api.post(
        versions_url(), {"artifact_uri": "https://x.example/m.joblib"}, format="json"
    )
    assert response.status_code == 403  # refused before the missing sample_input is a 400
    assert response.json() == {
        "detail": "Only data scientists or MLOps engineers may register model versions."
    }
    assert not ModelVersion.objects.exists()


def test_another_data_scientist_cannot_edit_alices_model(api_client_for, dave, churn):
    response = api_client_for(dave).patch(f"{MODELS}churn/", {"team": "mine"}, format="json")
    assert response.status_code == 403
    assert response.json() == {
        "detail": "Only the model's owner or an MLOps engineer may change it."
    }
    churn.refresh_from_db()
    assert churn.team == "growth"


def test_only_the_owner_or_an_engineer_registers_versions_of_a_model(
    api_client_for, dave, bob, churn
):
    """Dave, a data scientist of another team, cannot add versions to Alice's model; the
    refused registration leaves no version, no event and no burnt number."""
    body = {"artifact_uri": "https://artifacts.example.com/m.joblib", "sample_input": [[1]]}
    refused = api_client_for(dave).post(versions_url(), body, format="json")
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "Only the model's owner or an MLOps engineer may register versions of it."
    }
    assert not ModelVersion.objects.exists()
    assert not VersionEvent.objects.exists()
    churn.refresh_from_db()
    assert churn.latest_version_number == 0
    created = api_client_for(bob).post(versions_url(), body, format="json")
    assert created.status_code == 201
    assert (created.json()["version"], created.json()["registered_by"]) == (1, "bob")


# --- models ------------------------------------------------------------------------------


def test_it_creates_a_model(api_client_for, alice):
    response = api_client_for(alice).post(
        MODELS, {"name": "fraud", "team": "risk", "tags": ["tabular"]}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "fraud"
    assert body["owner"] == "alice"
    assert body["tags"] == ["tabular"]
    assert body["version_count"] == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"name": "churn"}, "name"), ({"name": "Bad Name"}, "name"), ({}, "name")],
)
def test_it_answers_400_naming_the_field(api_client_for, alice, churn, payload, field):
    response = api_client_for(alice).post(MODELS, payload, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_it_lists_filters_and_paginates_models(api_client_for, alice, dave):
    services.create_model(alice, name="churn", team="growth", tags=["tabular"])
    services.create_model(alice, name="fraud", team="risk", tags=["tabular"])
    services.create_model(dave, name="summarizer", team="nlp", tags=["text"], description="LLM")
    api = api_client_for(alice)

    def names(query):
        return [row["name"] for row in api.get(MODELS + query).json()["results"]]

    assert names("") == ["churn", "fraud", "summarizer"]
    assert names("?owner=dave") == ["summarizer"]
    assert names("?team=risk") == ["fraud"]
    assert names("?tag=tabular") == ["churn", "fraud"]
    assert names("?q=llm") == ["summarizer"]
    page = api.get(MODELS + "?page_size=2").json()
    assert page["count"] == 3
    assert len(page["results"]) == 2
    assert page["next"].endswith("page=2&page_size=2")


def test_it_updates_the_mutable_fields_of_a_model(api_client_for, alice, churn):
    response = api_client_for(alice).patch(
        f"{MODELS}churn/", {"description": "Predicts churn.", "tags": ["a", "b"]}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["description"] == "Predicts churn."
    assert response.json()["tags"] == ["a", "b"]
    assert response.json()["team"] == "growth"


def test_an_unknown_model_is_404(api_client_for, alice):
    api = api_client_for(alice)
    assert api.get(f"{MODELS}nope/").status_code == 404
    assert api.get(versions_url("nope")).status_code == 404


# --- versions ----------------------------------------------------------------------------


def test_it_registers_a_version_by_uri_as_json(api_client_for, alice, churn):
    response = api_client_for(alice).post(
        versions_url(),
        {
            "artifact_uri": "https://artifacts.example.com/churn/7/model.joblib",
            "metrics": {"auc": 0.91},
            "params": {"max_depth": 4},
            "sample_input": [[1, 2, 3, 4]],
            "source_url": "https://git.example.com/ml/churn/commit/abc123",
            "tags": ["candidate"],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["model"], body["version"], body["status"]) == ("churn", 1, "registered")
    assert body["metrics"] == {"auc": 0.91}
    assert body["tags"] == ["candidate"]
    assert body["registered_by"] == "alice"


def test_registering_under_an_unknown_model_is_404_and_writes_nothing(api_client_for, alice):
    response = api_client_for(alice).post(
        versions_url("nope"),
        {"artifact_uri": "https://artifacts.example.com/m.joblib", "sample_input": [[1]]},
        format="json",
    )
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]
    assert not ModelVersion.objects.exists()
    assert not VersionEvent.objects.exists()


def test_registering_by_uri_reads_the_model_as_it_numbers_the_version(api_client_for, alice, churn):
    api = api_client_for(alice)
    body = {"artifact_uri": "https://artifacts.example.com/m.joblib", "sample_input": [[1]]}
    api.post(versions_url(), body, format="json")  # warm-up: the token's last use is written
    with CaptureQueriesContext(connection) as queries:
        assert api.post(versions_url(), body, format="json").status_code == 201
    statements = [query["sql"].split()[0] for query in queries]
    statements = [verb for verb in statements if verb not in ("SAVEPOINT", "RELEASE")]
    # token, then one UPDATE … RETURNING for the model and its number, and one statement
    # inserting the version, its event, its change record and its validation job (the
    # outbox); no SELECT of the model, no re-read of the version.
    assert statements == ["SELECT", "UPDATE", "WITH"], statements
    assert churn.versions.get(number=2).model == churn


def test_it_registers_a_version_by_multipart_upload(api_client_for, alice, churn, outbox_jobs):
    artifact = iris_artifact()[0]
    response = api_client_for(alice).post(
        versions_url(),
        {
            "artifact": SimpleUploadedFile("model.joblib", artifact),
            "metrics": '{"accuracy": 0.97}',
            "sample_input": "[[5.1, 3.5, 1.4, 0.2]]",
            "tags": "candidate, iris",
        },
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["artifact_size"] == len(artifact)
    assert len(body["artifact_sha256"]) == 64
    assert body["metrics"] == {"accuracy": 0.97}
    assert body["tags"] == ["candidate", "iris"]
    version = ModelVersion.objects.get(model__name="churn", number=body["version"])
    assert outbox_jobs() == [("deployments.tasks.validate_version_task", (version.pk,))]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"artifact_uri": "https://x.example/m.joblib", "sample_input": []}, "sample_input"),
        ({"artifact_uri": "ftp://x/m", "sample_input": [[1]]}, "artifact_uri"),
        ({"sample_input": [[1]]}, "artifact_uri"),  # JSON registers by URI; files are multipart
        (
            {"artifact_uri": "https://x.example/m", "sample_input": [[1]], "metrics": {"a": "b"}},
            "metrics",
        ),
        (
            {"artifact_uri": "https://x.example/m", "sample_input": [[1]], "metrics": "{oops"},
            "metrics",
        ),
        (
            {"artifact_uri": "https://x.example/m", "sample_input": [[1]], "flavor": "onnx"},
            "flavor",
        ),
    ],
)
def test_a_bad_version_is_a_400_naming_the_field(api_client_for, alice, churn, payload, field):
    response = api_client_for(alice).post(versions_url(), payload, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()


def test_it_lists_and_filters_versions(api_client_for, alice, churn):
    first = register_iris_version(alice, churn)
    register_iris_version(alice, churn)
    services.validate_version(first.pk)
    api = api_client_for(alice)
    listed = api.get(versions_url()).json()
    assert [row["version"] for row in listed["results"]] == [2, 1]
    ready = api.get(versions_url() + "?status=ready").json()["results"]
    assert [row["version"] for row in ready] == [1]
    one = api.get(versions_url() + "1/").json()
    assert one["status"] == VersionStatus.READY


def test_it_updates_description_tags_and_archived_only(api_client_for, alice, churn):
    register_iris_version(alice, churn)
    api = api_client_for(alice)
    response = api.patch(
        versions_url() + "1/",
        {"description": "Champion", "tags": ["champion"], "archived": True},
        format="json",
    )
    assert response.status_code == 200
    assert (response.json()["description"], response.json()["archived"]) == ("Champion", True)
    refused = api.patch(versions_url() + "1/", {"metrics": {"auc": 1.0}}, format="json")
    assert refused.status_code == 400
    assert "immutable" in refused.json()["metrics"][0]


# --- query counts stay constant as rows grow ------------------------------------------


def _count_queries(api, url) -> int:
    api.get(url)  # warm-up: the token's last use is written at most once a minute
    with CaptureQueriesContext(connection) as queries:
        assert api.get(url).status_code == 200
    return len(queries)


def test_the_models_list_costs_the_same_queries_for_3_or_30_models(api_client_for, alice):
    api = api_client_for(alice)
    for n in range(3):
        services.create_model(alice, name=f"m{n}", tags=["x", f"t{n}"])
    few = _count_queries(api, MODELS)
    for n in range(3, 30):
        services.create_model(alice, name=f"m{n}", tags=["x", f"t{n}"])
    many = _count_queries(api, MODELS)
    assert few == many <= 5


def test_the_versions_list_costs_the_same_queries_for_2_or_12_versions(
    api_client_for, alice, churn
):
    api = api_client_for(alice)
    for _ in range(2):
        register_iris_version(alice, churn, tags=["a"])
    few = _count_queries(api, versions_url())
    for _ in range(10):
        register_iris_version(alice, churn, tags=["b"])
    many = _count_queries(api, versions_url())
    assert few == many <= 6


# --- schema and docs -----------------------------------------------------------------


def test_the_openapi_schema_describes_the_registry(client, alice):
    client.force_login(alice)
    response = client.get("/api/schema/", headers={"Accept": "application/vnd.oai.openapi+json"})
    assert response.status_code == 200
    schema = response.json()
    assert "/api/v1/models/{model_name}/versions/" in schema["paths"]
    assert "/api/v1/tokens/" in schema["paths"]
    assert "tokenAuth" in schema["components"]["securitySchemes"]


@pytest.mark.parametrize("scheme", ["Token", "Bearer"])
def test_a_script_with_a_token_fetches_the_schema_and_the_docs(scheme, alice):
    """A CI job has a token, not a session: it must get the schema to generate a client."""
    _, secret = account_services.create_token(alice, "ci")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"{scheme} {secret}")
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/models/" in schema["paths"]
    docs = api.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


def test_the_schema_refuses_a_bad_token_with_401(db):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token not-a-real-secret")
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 401
    assert b"paths" not in response.content


def test_swagger_ui_is_served_from_local_static_files(client, alice):
    client.force_login(alice)
    page = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
