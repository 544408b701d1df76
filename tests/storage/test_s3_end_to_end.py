"""ARTIFACT_STORAGE=s3 end to end with real processes: an upload through the API lands in
the bucket of the local S3 server (moto), a real Celery worker started with the same
settings validates it from there, and each backend serves it: the local backend's model
server, and a CD system (the webhook backend) through the signed URL in its payload."""

import contextlib
import json
import os

import httpx
import joblib
import pytest

from deployments import services
from deployments.choices import DeploymentState as State
from deployments.choices import VersionStatus
from deployments.models import Deployment, ModelVersion
from deployments.serving import fetching
from deployments.serving.loading import load_model, predict
from mlops_portal.celery import app
from tests.conftest import start_celery_worker, stop_process, wait_for_worker, wait_until
from tests.factories import iris_artifact, lightgbm_model_folder, lightgbm_zip

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
BUCKET = "portal-artifacts-e2e"
QUEUES = ("default", "deploy")


def s3_settings(s3_server) -> dict:
    return {**s3_server.settings(), "ARTIFACT_STORAGE": "s3", "ARTIFACT_S3_BUCKET": BUCKET}


@pytest.fixture(scope="module")
def s3_worker(celery_worker_process, s3_server, tmp_path_factory):
    """A worker started with ARTIFACT_STORAGE=s3, alone on the validation and deploy
    queues while this module runs (the session's worker stops consuming them)."""
    with contextlib.suppress(Exception):  # made by an earlier run of this module
        s3_server.client().create_bucket(Bucket=BUCKET)
    session_node = [celery_worker_process.node]
    for queue in QUEUES:
        app.control.cancel_consumer(queue, destination=session_node, reply=True)
    node = f"s3-{os.getpid()}@localhost"
    log_path = tmp_path_factory.mktemp("s3-worker") / "worker.log"
    env = {name: str(value) for name, value in s3_settings(s3_server).items()}
    worker = start_celery_worker(node, ",".join(QUEUES), log_path, concurrency=2, env=env)
    try:
        wait_for_worker(app, node, worker, log_path)
        yield worker
    finally:
        stop_process(worker)
        for queue in QUEUES:
            app.control.add_consumer(queue, destination=session_node, reply=True)


@pytest.fixture
def on_s3(s3_worker, s3_server, settings, tmp_path):
    """This process on the same bucket as the worker, with an empty MEDIA_ROOT."""
    settings.MEDIA_ROOT = tmp_path / "media"
    for name, value in s3_settings(s3_server).items():
        setattr(settings, name, value)


def final(version_id) -> ModelVersion | None:
    version = ModelVersion.objects.get(pk=version_id)
    return version if version.is_final else None


def settled(deployment_id) -> Deployment | None:
    deployment = Deployment.objects.get(pk=deployment_id)
    return deployment if deployment.state in (State.SUCCEEDED, State.FAILED) else None


def upload(client, model_name, filename, content, **fields):
    response = client.post(
        f"/api/v1/models/{model_name}/versions/",
        {"artifact": _named(content, filename), **fields},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    return ModelVersion.objects.get(model__name=model_name, number=response.json()["version"])


def _named(content: bytes, filename: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(filename, content)


def test_an_upload_is_stored_in_the_bucket_validated_from_there_and_served_locally(
    on_s3, s3_server, alice, iris, staging, api_client_for, tmp_path, settings
):
    artifact, _, _, sample = iris_artifact()
    version = upload(
        api_client_for(alice), "iris", "model.joblib", artifact, sample_input=json.dumps(sample)
    )

    stored = s3_server.client().get_object(Bucket=BUCKET, Key=version.artifact.name)
    assert stored["Body"].read() == artifact
    assert not (tmp_path / "media").exists()
    validated = wait_until(lambda: final(version.pk), timeout=60)
    assert validated.status == VersionStatus.READY, validated.status_detail

    deployment = services.request_deployment(
        alice, version=validated, target=staging, reason="From the bucket"
    )
    done = wait_until(lambda: settled(deployment.pk), timeout=60)
    assert done.state == State.SUCCEEDED, done.failure_reason
    log = list(done.log_lines.values_list("message", flat=True))
    assert any("from the artifact storage" in line for line in log)
    (tmp_path / "m.joblib").write_bytes(artifact)
    expected = joblib.load(tmp_path / "m.joblib").predict(sample).tolist()
    answer = httpx.post(f"{done.endpoint}/predict", json={"instances": sample}, timeout=5)
    assert answer.json()["predictions"] == expected


def test_a_cd_system_downloads_the_uploaded_pickle_from_the_payloads_signed_url(
    on_s3, alice, iris, webhook_target, cd_system, api_client_for, tmp_path
):
    artifact, _, _, sample = iris_artifact()
    version = upload(
        api_client_for(alice), "iris", "model.joblib", artifact, sample_input=json.dumps(sample)
    )
    version = wait_until(lambda: final(version.pk), timeout=60)

    deployment = services.request_deployment(
        alice, version=version, target=webhook_target, reason="Hand it to CD"
    )
    assert wait_until(lambda: settled(deployment.pk), timeout=60).state == State.SUCCEEDED
    payload = json.loads(cd_system.requests[0][1])

    assert "X-Amz-Signature=" in payload["artifact_url"]
    assert payload["artifact_uri"] == payload["artifact_url"]  # an upload: no other source
    assert payload["artifact_bundle"] is False
    path = fetching.download(payload["artifact_url"], tmp_path, sha256=payload["artifact_sha256"])
    assert path.read_bytes() == artifact


def test_a_cd_system_gets_an_mlflow_model_as_a_bundle_the_worker_built_into_the_bucket(
    on_s3, s3_server, alice, churn, webhook_target, cd_system, api_client_for, tmp_path
):
    version = upload(api_client_for(alice), "churn", "churn.zip", lightgbm_zip())
    version = wait_until(lambda: final(version.pk), timeout=120)
    assert version.status == VersionStatus.READY, version.status_detail

    deployment = services.request_deployment(
        alice, version=version, target=webhook_target, reason="Hand it to CD"
    )
    assert wait_until(lambda: settled(deployment.pk), timeout=60).state == State.SUCCEEDED
    payload = json.loads(cd_system.requests[0][1])

    assert payload["artifact_bundle"] is True
    keys = [item["Key"] for item in s3_server.client().list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert f"served/churn-v1-{version.pk}.tar.gz" in keys
    # What HTTP clients and KServe's storage initializer judge the object by.
    head = s3_server.client().head_object(Bucket=BUCKET, Key=f"served/churn-v1-{version.pk}.tar.gz")
    assert head["ContentType"] == "application/gzip" and "ContentEncoding" not in head
    folder = fetching.download(
        payload["artifact_url"], tmp_path, sha256=payload["artifact_url_sha256"]
    )
    rows = lightgbm_model_folder()[3][:3]
    assert len(predict(load_model(folder, "mlflow"), rows)) == 3
