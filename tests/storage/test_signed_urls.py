"""Artifacts kept in the local folder or an S3 bucket (the local moto server), and the
short-lived links a backend running elsewhere fetches them by."""

import hashlib
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.test import Client

from deployments import services, storage
from deployments.backends import webhook
from deployments.serving import fetching
from deployments.serving.loading import load_model, predict
from tests.factories import (
    iris_artifact,
    lightgbm_model_folder,
    lightgbm_zip,
    register_iris_version,
    validated,
)
from tests.storage.conftest import presigned_refusal

pytestmark = pytest.mark.django_db


def portal_path(url, settings) -> str:
    assert url.startswith(settings.PORTAL_BASE_URL)
    return url[len(settings.PORTAL_BASE_URL) :]


# --- the default: the local folder ------------------------------------------------------


def test_by_default_an_upload_is_a_file_under_media_root_used_where_it_lies(alice, iris, settings):
    version = register_iris_version(alice, iris)
    assert isinstance(storage.artifact_storage(), FileSystemStorage)
    path = Path(settings.MEDIA_ROOT) / version.artifact.name
    assert path.read_bytes() == iris_artifact()[0]
    assert storage.stored_path(version.artifact.name) == path
    assert validated(version).status == "ready"


def test_a_signed_portal_url_serves_the_pickle_without_a_session(alice, iris, settings, caplog):
    version = validated(register_iris_version(alice, iris))
    url = storage.signed_artifact_url(version)
    caplog.set_level(logging.INFO, logger="deployments.views.artifacts")
    assert url.startswith(f"{settings.PORTAL_BASE_URL}/artifacts/signed/{version.pk}/")
    assert url.endswith("/model.joblib") or url.endswith(".joblib")

    response = Client().get(portal_path(url, settings))  # no login

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == iris_artifact()[0]
    assert "attachment" in response["Content-Disposition"]
    assert f"Signed artifact link used: {version}" in caplog.text  # who fetched what, logged


def test_an_expired_portal_url_is_refused(alice, iris, settings, monkeypatch):
    version = validated(register_iris_version(alice, iris))
    url = storage.signed_artifact_url(version, expires_in=60)
    later = time.time() + 61
    monkeypatch.setattr(storage.time, "time", lambda: later)

    response = Client().get(portal_path(url, settings))

    assert response.status_code == 403
    assert b"expired" in response.content


def test_a_tampered_portal_url_is_refused(alice, iris, settings):
    version = validated(register_iris_version(alice, iris))
    path = portal_path(storage.signed_artifact_url(version), settings)
    prefix, token, filename = path.rsplit("/", 2)
    forged = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")

    response = Client().get(f"{prefix}/{forged}/{filename}")

    assert response.status_code == 403
    assert b"signature" in response.content


def test_one_versions_token_does_not_open_another_version(alice, iris, settings):
    first = validated(register_iris_version(alice, iris))
    second = validated(register_iris_version(alice, iris))
    path = portal_path(storage.signed_artifact_url(first), settings)
    token = path.split("/")[-2]

    response = Client().get(f"/artifacts/signed/{second.pk}/{token}/model.joblib")

    assert response.status_code == 403
    assert b"another artifact" in response.content


def test_an_mlflow_model_is_served_as_a_bundle_built_once_and_loadable_after_download(
    alice, churn, settings, tmp_path, live_server
):
    settings.PORTAL_BASE_URL = live_server.url
    version = validated(register_zip(alice, churn))
    assert version.status == "ready", version.status_detail
    signed = storage.signed_artifact(version)
    assert signed.is_bundle and signed.url.endswith(".tar.gz")
    assert storage.signed_artifact(version).sha256 == signed.sha256  # built once, reused

    folder = fetching.download(signed.url, tmp_path / "remote", sha256=signed.sha256)

    assert (folder / "MLmodel").is_file()
    model = load_model(folder, "mlflow")
    assert len(predict(model, sample_rows())) == 2


def sample_rows():
    return lightgbm_model_folder()[3][:2]


def register_zip(user, model):
    """A LightGBM MLflow model uploaded as a zip."""
    return services.register_version(
        user, model.name, artifact=ContentFile(lightgbm_zip(), name="churn.zip")
    )


def test_the_webhook_payload_links_the_upload_through_a_signed_url_not_media(
    alice, bob, iris, settings, tmp_path, live_server
):
    settings.PORTAL_BASE_URL = live_server.url
    version = validated(register_iris_version(alice, iris))
    target = services.create_target(
        bob,
        name="cd",
        environment="staging",
        backend="webhook",
        backend_settings={"url": "http://127.0.0.1:9/deploy", "secret": "s" * 16},
    )
    deployment = services.request_deployment(alice, version=version, target=target, reason="Go")

    body = webhook.payload(deployment)

    assert "/media/" not in body["artifact_uri"]
    assert body["artifact_uri"] == body["artifact_url"]
    assert body["artifact_url_sha256"] == version.artifact_sha256
    path = fetching.download(body["artifact_url"], tmp_path, sha256=body["artifact_url_sha256"])
    assert path.read_bytes() == iris_artifact()[0]


def test_a_download_with_the_wrong_sha256_is_refused(alice, iris, settings, tmp_path, live_server):
    settings.PORTAL_BASE_URL = live_server.url
    version = validated(register_iris_version(alice, iris))

    with pytest.raises(fetching.FetchError, match="SHA-256"):
        fetching.download(storage.signed_artifact_url(version), tmp_path, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


# --- S3 ------------------------------------------------------------------------------------


def test_an_upload_lands_in_the_bucket_and_validates_from_there(
    alice, iris, s3_artifacts, s3_server, settings
):
    version = register_iris_version(alice, iris)

    stored = s3_server.client().get_object(Bucket=s3_artifacts, Key=version.artifact.name)
    assert stored["Body"].read() == iris_artifact()[0]
    assert not (Path(settings.MEDIA_ROOT) / version.artifact.name).exists()
    assert storage.stored_path(version.artifact.name) is None
    assert validated(version).status == "ready"


def test_a_presigned_s3_url_serves_the_pickle_until_it_expires(
    alice, iris, s3_artifacts, s3_server, tmp_path
):
    version = validated(register_iris_version(alice, iris))
    url = storage.signed_artifact_url(version, expires_in=120)
    assert "X-Amz-Expires=120" in url

    path = fetching.download(url, tmp_path, sha256=version.artifact_sha256)

    assert path.read_bytes() == iris_artifact()[0]
    now = datetime.now(UTC)
    assert presigned_refusal(url, s3_server, now) is None
    assert presigned_refusal(url, s3_server, now + timedelta(seconds=121)) == "Request has expired"
    longer = url.replace("X-Amz-Expires=120", "X-Amz-Expires=99999")
    assert presigned_refusal(longer, s3_server, now) == "SignatureDoesNotMatch"
    other_key = url.replace("iris-v1-model.joblib", "iris-v2-model.joblib")
    assert presigned_refusal(other_key, s3_server, now) == "SignatureDoesNotMatch"


def test_with_s3_storage_the_storage_uri_names_the_served_object(
    alice, churn, s3_artifacts, s3_server
):
    version = validated(register_zip(alice, churn))

    uri = storage.storage_uri(version)

    assert uri.startswith(f"s3://{s3_artifacts}/served/churn-v1-")
    assert uri.endswith(".tar.gz")
    key = uri.split("/", 3)[3]
    body = s3_server.client().get_object(Bucket=s3_artifacts, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == storage.served_file(version).sha256


def test_with_the_local_folder_the_storage_uri_is_the_signed_url(alice, iris, settings):
    version = validated(register_iris_version(alice, iris))
    assert storage.storage_uri(version).startswith(f"{settings.PORTAL_BASE_URL}/artifacts/signed/")


def test_a_link_longer_than_s3_allows_is_refused(alice, iris):
    version = validated(register_iris_version(alice, iris))
    with pytest.raises(ValueError, match="1 to 604800"):
        storage.signed_artifact_url(version, expires_in=8 * 24 * 3600)
