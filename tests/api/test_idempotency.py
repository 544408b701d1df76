"""`Idempotency-Key` on the API's creates: a retry gets the first answer, nothing new."""

import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from deployments.models import Deployment, ModelVersion, RegisteredModel
from mlops_portal.core.api import idempotency
from mlops_portal.models import IdempotencyKey
from tests.factories import RegisteredModelFactory, iris_artifact, register_iris_version, validated


def test_a_retried_create_returns_the_first_answer_and_creates_nothing(api_client_for, alice):
    api = api_client_for(alice)
    payload = {"name": "churn", "team": "growth"}
    first = api.post("/api/v1/models/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post("/api/v1/models/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert RegisteredModel.objects.count() == 1


def test_the_same_key_with_another_body_is_409_naming_the_header(api_client_for, alice):
    api = api_client_for(alice)
    api.post("/api/v1/models/", {"name": "churn"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    other = api.post("/api/v1/models/", {"name": "fraud"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert other.status_code == 409
    assert other.json()["detail"].startswith("Idempotency-Key 'k' was already used")
    assert list(RegisteredModel.objects.values_list("name", flat=True)) == ["churn"]


def test_keys_belong_to_their_user(api_client_for, alice, dave):
    for user, name in ((alice, "churn"), (dave, "fraud")):
        response = api_client_for(user).post(
            "/api/v1/models/", {"name": name}, format="json", HTTP_IDEMPOTENCY_KEY="same"
        )
        assert response.status_code == 201
    assert RegisteredModel.objects.count() == 2


def test_an_error_is_not_remembered_so_the_retry_runs_again(api_client_for, alice):
    api = api_client_for(alice)
    refused = api.post("/api/v1/models/", {"name": ""}, format="json", HTTP_IDEMPOTENCY_KEY="e")
    assert refused.status_code == 400
    assert not IdempotencyKey.objects.exists()
    fixed = api.post("/api/v1/models/", {"name": "ok"}, format="json", HTTP_IDEMPOTENCY_KEY="e")
    assert fixed.status_code == 201


def test_without_a_key_every_post_creates(api_client_for, alice):
    api = api_client_for(alice)
    model = RegisteredModelFactory(owner=alice)
    body = {"artifact_uri": "http://127.0.0.1:9/m.joblib", "sample_input": [[1.0]]}
    for _ in range(2):
        assert (
            api.post(f"/api/v1/models/{model.name}/versions/", body, format="json").status_code
            == 201
        )
    assert ModelVersion.objects.count() == 2


def test_an_upload_retried_with_a_new_multipart_boundary_registers_once(api_client_for, alice):
    api = api_client_for(alice)
    model = RegisteredModelFactory(owner=alice)
    artifact, metrics, _, sample = iris_artifact()

    def upload(content):
        return api.post(
            f"/api/v1/models/{model.name}/versions/",
            {
                "artifact": SimpleUploadedFile("model.joblib", content),
                "sample_input": json.dumps(sample),
                "metrics": json.dumps(metrics),
            },
            format="multipart",
            HTTP_IDEMPOTENCY_KEY="upload-1",
        )

    first, again = upload(artifact), upload(artifact)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and first.json()["version"] == 1
    assert ModelVersion.objects.count() == 1
    assert upload(artifact + b"\0").status_code == 409  # another file under the same key


def test_deployment_requests_and_rollbacks_are_idempotent(api_client_for, alice, bob):
    from deployments import services
    from deployments.choices import DeploymentState

    model = RegisteredModelFactory(owner=alice)
    target = services.create_target(bob, name="production", environment="production")
    api = api_client_for(alice)
    for number in (1, 2):
        validated(register_iris_version(alice, model))
        body = {"model": model.name, "version": number, "target": "production", "reason": "x"}
        key = f"request-{number}"
        first = api.post("/api/v1/deployments/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
        again = api.post("/api/v1/deployments/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
        assert (first.status_code, again.status_code, again.json()) == (201, 201, first.json())
        live = services.approve_deployment(bob, Deployment.objects.get(pk=first.json()["id"]))
        Deployment.objects.filter(pk=live.pk).update(state=DeploymentState.RUNNING)
        live.refresh_from_db()
        services.complete_deployment(live, "http://127.0.0.1:9")
    assert Deployment.objects.filter(target=target).count() == 2

    url = f"/api/v1/deployments/{live.pk}/rollback/"
    engineer = api_client_for(bob)
    rolled = [
        engineer.post(url, {"reason": "p99 up"}, format="json", HTTP_IDEMPOTENCY_KEY="rb")
        for _ in range(2)
    ]
    assert [r.status_code for r in rolled] == [201, 201]
    assert rolled[1].json() == rolled[0].json() and rolled[0].json()["version"] == 1
    assert Deployment.objects.count() == 3


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve"])
def test_a_bad_key_is_400_naming_the_header(api_client_for, alice, key):
    response = api_client_for(alice).post(
        "/api/v1/models/", {"name": "churn"}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert not RegisteredModel.objects.exists()


def test_a_key_past_its_retention_is_new_again_and_pruned(api_client_for, alice):
    api = api_client_for(alice)
    api.post("/api/v1/models/", {"name": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="old")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    response = api.post("/api/v1/models/", {"name": "b"}, format="json", HTTP_IDEMPOTENCY_KEY="old")
    assert response.status_code == 201 and response.json()["name"] == "b"
    assert IdempotencyKey.objects.get().response["name"] == "b"

    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert idempotency.prune() == 1
    assert not IdempotencyKey.objects.exists()


def test_the_schema_documents_the_header_on_the_creates(api_client_for, alice):
    schema = api_client_for(alice).get("/api/schema/?format=json").json()

    def headers(path, method="post"):
        parameters = schema["paths"][path][method].get("parameters", [])
        return {p["name"] for p in parameters if p["in"] == "header"}

    for path in (
        "/api/v1/models/",
        "/api/v1/models/{model_name}/versions/",
        "/api/v1/deployments/",
        "/api/v1/deployments/{id}/rollback/",
    ):
        assert "Idempotency-Key" in headers(path), path
    assert "Idempotency-Key" not in headers("/api/v1/deployments/{id}/approve/")
