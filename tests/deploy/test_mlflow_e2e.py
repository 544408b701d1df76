"""An MLflow LightGBM model end to end: registered through the API as a zip, validated by
the real worker, requested, approved and deployed on the local backend, then asked for
predictions over the Open Inference Protocol (V2)."""

import httpx
import lightgbm
import numpy
import pandas
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from deployments import services
from deployments.backends.local import deployment_folder
from deployments.choices import VersionStatus
from deployments.models import ModelVersion
from tests.conftest import wait_until
from tests.deploy.test_local_e2e import deploy
from tests.factories import lightgbm_model_folder, lightgbm_zip

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

FEATURES = ["tenure_months", "monthly_spend", "support_tickets", "logins_per_week"]
ROWS = [[24.0, 55.0, 4.0, 1.0], [70.0, 30.0, 0.0, 8.5]]


def test_a_lightgbm_mlflow_model_is_validated_deployed_and_answers_v2_infer(
    celery_worker_process, api_client_for, alice, bob, production
):
    version = register_churn_model(api_client_for, alice)
    assert version.mlflow_flavors == ["lightgbm", "python_function"]

    deployment = deploy(alice, bob, version, production, reason="Churn model, first release")
    assert deployment_folder(deployment).is_dir()  # laid out for its own server
    check_v2_answers(deployment.endpoint)


def register_churn_model(api_client_for, user) -> ModelVersion:
    """The LightGBM MLflow model registered through the API as a zip (churn-lgbm v1), once
    the real worker has validated it (READY)."""
    services.create_model(user, name="churn-lgbm", team="growth")
    zipped = SimpleUploadedFile("churn-lgbm.zip", lightgbm_zip(), "application/zip")
    answer = api_client_for(user).post(
        "/api/v1/models/churn-lgbm/versions/",
        {"artifact": zipped, "metrics": '{"auc": 0.9}'},
        format="multipart",
    )
    assert answer.status_code == 201, answer.content
    assert answer.json()["flavor"] == "mlflow"

    def final():
        version = ModelVersion.objects.get(model__name="churn-lgbm", number=1)
        return version if version.is_final else None

    version = wait_until(final, timeout=90)
    assert version.status == VersionStatus.READY, version.status_detail
    return version


def check_v2_answers(endpoint):
    """The churn model at `endpoint` answers V2 infer with LightGBM's own predictions,
    and its V2 metadata names the signature's columns."""
    body = {
        "inputs": [
            {"name": name, "shape": [2], "datatype": "FP64", "data": [row[i] for row in ROWS]}
            for i, name in enumerate(FEATURES)
        ]
    }
    response = httpx.post(f"{endpoint}/v2/models/churn-lgbm/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    [output] = response.json()["outputs"]
    booster = lightgbm.Booster(model_file=str(lightgbm_model_folder()[0] / "model.lgb"))
    expected = booster.predict(pandas.DataFrame(ROWS, columns=FEATURES))
    assert output["shape"] == [2]
    assert numpy.allclose(output["data"], expected)
    metadata = httpx.get(f"{endpoint}/v2/models/churn-lgbm").json()
    assert [spec["name"] for spec in metadata["inputs"]] == FEATURES
