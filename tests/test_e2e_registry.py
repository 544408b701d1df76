"""End to end over HTTP: a CI pipeline registers a version with an uploaded artifact and
waits until the real worker has made it `ready`."""

import json

import httpx
import pytest

from mlops_portal.core import tokens as accounts
from tests.conftest import wait_until
from tests.factories import iris_artifact

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_pipeline_registers_a_version_and_sees_it_become_ready(
    live_server, celery_worker_process, alice
):
    _, secret = accounts.create_token(alice, "training-pipeline")
    artifact, metrics, _, sample = iris_artifact()
    with httpx.Client(
        base_url=f"{live_server.url}/api/v1/", headers={"Authorization": f"Token {secret}"}
    ) as api:
        assert api.post("models/", json={"name": "iris", "team": "botany"}).status_code == 201
        created = api.post(
            "models/iris/versions/",
            files={"artifact": ("model.joblib", artifact)},
            data={"metrics": json.dumps(metrics), "sample_input": json.dumps(sample)},
        )
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "registered"

        def ready():
            body = api.get("models/iris/versions/1/").json()
            return body if body["status"] in ("ready", "invalid") else None

        version = wait_until(ready)
    assert version["status"] == "ready", version["status_detail"]
    assert version["metrics"] == metrics
    assert version["artifact_size"] == len(artifact)
