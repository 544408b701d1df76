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
    services.create_model(alice, name="churn-lgbm", team="growth")
    zipped = SimpleUploadedFile("churn-lgbm.zip", lightgbm_zip(), "application/zip")
    answer = api_client_for(alice).post(
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
    assert version.mlflow_flavors == ["lightgbm", "python_function"]

    deployment = deploy(alice, bob, version, production, reason="Churn model, first release")
    assert deployment_folder(deployment).is_dir()  # laid out for its own server

    body = {
        "inputs": [
            {"name": name, "shape": [2], "datatype": "FP64", "data": [row[i] for row in ROWS]}
            for i, name in enumerate(FEATURES)
        ]
    }
    response = httpx.post(
        f"{deployment.endpoint}/v2/models/churn-lgbm/infer", json=body, timeout=10
    )
    assert response.status_code == 200, response.text
    [output] = response.json()["outputs"]
    booster = lightgbm.Booster(model_file=str(lightgbm_model_folder()[0] / "model.lgb"))
    expected = booster.predict(pandas.DataFrame(ROWS, columns=FEATURES))
    assert output["shape"] == [2]
    assert numpy.allclose(output["data"], expected)
    metadata = httpx.get(f"{deployment.endpoint}/v2/models/churn-lgbm").json()
    assert [spec["name"] for spec in metadata["inputs"]] == FEATURES
