"""The MLflow API's HTTP edges, in-process: credentials, MLflow's error bodies for unknown
paths and malformed requests, and the query count of the search pages."""

import base64
import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from deployments import services
from deployments.models import ModelVersion, RegisteredModel
from mlops_portal.core import tokens
from tests.factories import PASSWORD

API = "/api/2.0/mlflow"


def token_client(user) -> Client:
    _, secret = tokens.create_token(user, "mlflow")
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def basic_client(username, password) -> Client:
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    return Client(HTTP_AUTHORIZATION=f"Basic {encoded}")


def post(client, path, body):
    return client.post(f"{API}/{path}", data=json.dumps(body), content_type="application/json")


@pytest.mark.django_db
def test_no_credentials_is_401_with_mlflows_body():
    response = Client().get(f"{API}/registered-models/search")
    assert response.status_code == 401
    assert response.json()["error_code"] == "UNAUTHENTICATED"


@pytest.mark.django_db
def test_a_bad_token_is_401():
    response = Client(HTTP_AUTHORIZATION="Bearer nope").get(f"{API}/registered-models/search")
    assert (response.status_code, response.json()["error_code"]) == (401, "UNAUTHENTICATED")


@pytest.mark.django_db
def test_a_read_only_token_reads_but_may_not_write(alice):
    _, secret = tokens.create_token(alice, "read", scope="read")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get(f"{API}/registered-models/search").status_code == 200
    refused = post(client, "registered-models/create", {"name": "churn"})
    assert (refused.status_code, refused.json()["error_code"]) == (403, "PERMISSION_DENIED")
    assert "read-only" in refused.json()["message"]
    assert not RegisteredModel.objects.exists()


@pytest.mark.django_db
def test_an_expired_token_is_401_not_a_crash(alice):
    from datetime import timedelta

    from django.utils import timezone

    token, secret = tokens.create_token(
        alice, "soon", expires_at=timezone.now() + timedelta(hours=1)
    )
    token.__class__.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(1))
    response = Client(HTTP_AUTHORIZATION=f"Bearer {secret}").get(f"{API}/registered-models/search")
    assert (response.status_code, response.json()["error_code"]) == (401, "UNAUTHENTICATED")
    assert "expired" in response.json()["message"]


@pytest.mark.django_db
def test_basic_auth_with_the_portal_password_acts_as_the_user(alice):
    response = post(basic_client("alice", PASSWORD), "registered-models/create", {"name": "churn"})
    assert response.status_code == 200
    assert RegisteredModel.objects.get().owner == alice


@pytest.mark.django_db
def test_basic_auth_failures_lock_the_account_as_the_login_form_does(alice, settings):
    first = basic_client("alice", "wrong").get(f"{API}/registered-models/search")
    assert (first.status_code, first.json()["error_code"]) == (401, "UNAUTHENTICATED")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        basic_client("alice", "wrong").get(f"{API}/registered-models/search")
    locked = basic_client("alice", PASSWORD).get(f"{API}/registered-models/search")
    assert locked.status_code == 429
    assert locked.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"


@pytest.mark.django_db
def test_unknown_paths_and_methods_are_endpoint_not_found(alice):
    client = token_client(alice)
    for response in (
        client.get(f"{API}/registered-models/nothing"),
        client.get(f"{API}/"),
        client.get(f"{API}/registered-models/create"),
    ):
        assert response.status_code == 404
        assert response.json()["error_code"] == "ENDPOINT_NOT_FOUND"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path, body",
    [
        ("registered-models/create", "not json"),
        ("registered-models/create", [1, 2]),
        ("registered-models/create", {"name": 5}),
        ("registered-models/create", {"name": "y", "tags": "team=growth"}),
        ("registered-models/create", {"name": "y", "tags": [{"key": "k", "value": 1}]}),
        ("registered-models/create", {"name": "y", "description": ["d"]}),
        ("model-versions/create", {"name": "x"}),
        ("model-versions/transition-stage",
         {"name": "x", "version": "1", "stage": "None", "archive_existing_versions": "maybe"}),
    ],
)  # fmt: skip
def test_wrong_types_are_invalid_parameter_value_and_write_nothing(alice, path, body):
    services.create_model(alice, name="x")
    raw = body if isinstance(body, str) else json.dumps(body)
    response = token_client(alice).post(f"{API}/{path}", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert RegisteredModel.objects.count() == 1


@pytest.mark.django_db
def test_searches_cost_the_same_queries_for_any_page_size(
    alice, django_assert_num_queries, artifact_server
):
    from deployments.services import aliases

    client = token_client(alice)
    for index in range(12):
        model = services.create_model(alice, name=f"m-{index}", mlflow_tags={"k": "v"})
        for _ in range(2):
            services.register_version(alice, model.name, artifact_uri=f"{artifact_server}/m.joblib")
        aliases.set_alias(alice, model, "champion", 1)
    client.get(f"{API}/registered-models/search")  # the token's last use is written once
    # token, models, their latest versions, their aliases
    with django_assert_num_queries(4):
        page = client.get(
            f"{API}/registered-models/search", {"max_results": 10, "filter": "name LIKE 'm-%'"}
        )
    assert len(page.json()["registered_models"]) == 10
    assert page.json()["registered_models"][0]["aliases"] == [{"alias": "champion", "version": "1"}]
    # Without a filter, in name order: token, then the page's JSON written by PostgreSQL
    # (tests/mlflow_api/test_models_page.py), or the four above on SQLite.
    with django_assert_num_queries(2 if connection.vendor == "postgresql" else 4):
        everything = client.get(f"{API}/registered-models/search", {"max_results": 10})
    assert everything.json() == page.json()
    with django_assert_num_queries(2):  # token, versions
        versions = client.get(f"{API}/model-versions/search", {"max_results": 20})
    assert len(versions.json()["model_versions"]) == 20


@pytest.mark.django_db
def test_a_version_and_its_aliases_are_read_in_one_query(
    alice, django_assert_num_queries, artifact_server
):
    from deployments.services import aliases

    client = token_client(alice)
    model = services.create_model(alice, name="one-read")
    for _ in range(2):
        services.register_version(alice, model.name, artifact_uri=f"{artifact_server}/m.joblib")
    for alias, number in (("prod", 2), ("champion", 2), ("old", 1)):
        aliases.set_alias(alice, model, alias, number)
    asked = {"name": "one-read", "version": "2"}
    client.get(f"{API}/model-versions/get", asked)  # the token's last use is written once
    with django_assert_num_queries(2):  # token, the version with its alias names
        answer = client.get(f"{API}/model-versions/get", asked)
    assert answer.json()["model_version"]["aliases"] == ["champion", "prod"]
    with django_assert_num_queries(2):
        first = client.get(f"{API}/model-versions/get", {"name": "one-read", "version": "1"})
    assert first.json()["model_version"]["aliases"] == ["old"]


@pytest.mark.django_db
def test_a_deployed_version_is_not_deleted(alice, bob, artifact_server):
    from deployments.models import Deployment, ModelVersion, Target

    model = services.create_model(alice, name="churn")
    version = services.register_version(alice, "churn", artifact_uri=f"{artifact_server}/m.joblib")
    target = Target.objects.create(name="staging", environment="staging", created_by=bob)
    Deployment.objects.create(target=target, version=version, reason="x", requested_by=alice)
    client = token_client(alice)
    for path, body in (
        ("model-versions/delete", {"name": "churn", "version": "1"}),
        ("registered-models/delete", {"name": "churn"}),
    ):
        response = client.delete(f"{API}/{path}", json.dumps(body), "application/json")
        assert response.status_code == 400
        assert "archive" in response.json()["message"]
    assert ModelVersion.objects.filter(model=model).exists()


CREATE_BODY = {"name": "m", "source": "https://artifacts.example.com/m.joblib"}


def statements_of_a_second_create(client) -> list[str]:
    """The first word of each SQL statement the second `model-versions/create` of model
    "m" runs (the first one warms up what is read once per process)."""
    client.post(f"{API}/model-versions/create", CREATE_BODY, content_type="application/json")
    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            f"{API}/model-versions/create", CREATE_BODY, content_type="application/json"
        )
    assert response.json()["model_version"]["version"] == "2"
    return [query["sql"].split()[0] for query in queries]


@pytest.mark.django_db
def test_creating_a_version_costs_three_statements(alice):
    client = token_client(alice)
    services.create_model(alice, name="m")
    statements = statements_of_a_second_create(client)
    statements = [verb for verb in statements if verb not in ("SAVEPOINT", "RELEASE")]
    # token, the model's number (UPDATE … RETURNING), then the version, its event, its
    # change record and its validation job in one statement; nothing read back.
    assert statements == ["SELECT", "UPDATE", "WITH"], statements


@pytest.mark.django_db(transaction=True)
def test_creating_a_version_is_one_transaction_without_a_savepoint(alice):
    """The service's own transaction is the request's: no SAVEPOINT inside another one."""
    client = token_client(alice)
    services.create_model(alice, name="m")
    statements = statements_of_a_second_create(client)
    # token; BEGIN, number, the four rows, COMMIT; then the job marked sent.
    assert statements == ["SELECT", "BEGIN", "UPDATE", "WITH", "COMMIT", "UPDATE"], statements
    missing = client.post(
        f"{API}/model-versions/create",
        {**CREATE_BODY, "name": "nope"},
        content_type="application/json",
    )
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert ModelVersion.objects.filter(model__name="m").count() == 2
