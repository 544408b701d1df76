import itertools
from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import parse_qsl, unquote, urlsplit

import boto3
import pytest
from botocore.config import Config

from deployments import services
from deployments.storage import artifact_storage
from tests.conftest import stop_model_servers

# The CD system stand-in and its webhook target, shared with the deploy tests.
from tests.deploy.conftest import cd_system, webhook_target  # noqa: F401

BUCKETS = itertools.count(1)


@pytest.fixture
def s3_artifacts(s3_server, settings, tmp_path):
    """ARTIFACT_STORAGE=s3 on a fresh bucket of the local S3 server (and an empty
    MEDIA_ROOT, which must stay empty); returns the bucket's name."""
    settings.MEDIA_ROOT = tmp_path / "media"
    bucket = f"portal-artifacts-{next(BUCKETS)}"
    s3_server.client().create_bucket(Bucket=bucket)
    for name, value in s3_server.settings().items():
        setattr(settings, name, value)
    settings.ARTIFACT_STORAGE = "s3"
    settings.ARTIFACT_S3_BUCKET = bucket
    assert type(artifact_storage()).__name__ == "ArtifactS3Storage"
    return bucket


@pytest.fixture
def iris(alice):
    return services.create_model(alice, name="iris", team="botany")


@pytest.fixture
def churn(alice):
    return services.create_model(alice, name="churn", team="growth")


def presigned_refusal(url: str, s3_server, now: datetime) -> str | None:
    """Why S3 would refuse the presigned GET `url` at `now`, or None: expired, or a
    signature that does not match (recomputed with the server's secret key at the
    URL's own signing time). moto serves presigned URLs without checking either (it checks
    only Authorization headers), so this is the check S3 makes on its side."""
    parsed = urlsplit(url)
    query = dict(parse_qsl(parsed.query))
    signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    lifetime = int(query["X-Amz-Expires"])
    bucket, key = unquote(parsed.path).lstrip("/").split("/", 1)
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        region_name=s3_server.region,
        aws_access_key_id=s3_server.access_key_id,
        aws_secret_access_key=s3_server.secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    with mock.patch(
        "botocore.auth.get_current_datetime", return_value=signed_at.replace(tzinfo=None)
    ):
        expected = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=lifetime
        )
    if dict(parse_qsl(urlsplit(expected).query))["X-Amz-Signature"] != query["X-Amz-Signature"]:
        return "SignatureDoesNotMatch"
    if now > signed_at + timedelta(seconds=lifetime):
        return "Request has expired"
    return None


@pytest.fixture(autouse=True)
def stop_model_servers_after_each_test():
    yield
    stop_model_servers()


@pytest.fixture
def staging(bob):
    """A local target that needs no approval."""
    return services.create_target(bob, name="staging", environment="staging")
