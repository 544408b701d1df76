"""Versions registered over MLflow are validated by the real worker: READY when the model
loads, FAILED_REGISTRATION with the reason when it does not; `mlflow.register_model` waits
for the outcome as it does against an MLflow server."""

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from deployments.choices import VersionStatus
from deployments.models import ModelVersion
from tests.conftest import mlflow_pointed_at

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_register_model_waits_until_the_worker_validated_it(
    celery_worker_process, alice, mlflow_for, artifact_server, live_server
):
    mlflow_for(alice)  # the token in the environment
    with mlflow_pointed_at(live_server.url):
        version = mlflow.register_model(
            f"{artifact_server}/model.joblib", "churn", await_registration_for=60
        )
    assert version.version == "1"
    row = ModelVersion.objects.get(model__name="churn", number=1)
    assert row.status == VersionStatus.READY
    assert mlflow_for(alice).get_model_version("churn", "1").status == "READY"


def test_an_artifact_that_does_not_load_is_failed_registration(
    celery_worker_process, alice, mlflow_for, artifact_server
):
    client = mlflow_for(alice)
    client.create_registered_model("churn")
    with pytest.raises(MlflowException, match="FAILED_REGISTRATION"):
        client.create_model_version(
            "churn", f"{artifact_server}/missing.joblib", await_creation_for=60
        )
    failed = client.get_model_version("churn", "1")
    assert failed.status == "FAILED_REGISTRATION"
    assert "404" in failed.status_message
    assert ModelVersion.objects.get().status == VersionStatus.INVALID
