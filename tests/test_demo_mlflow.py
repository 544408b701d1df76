"""The demo's MLflow model is registered the way a team does it: the stock MlflowClient
against the running portal, as the demo data scientist, through a token it then revokes."""

import pytest

from deployments.choices import Flavor
from deployments.management.commands.register_mlflow_demo import (
    ALIAS,
    MODEL,
    register_with_mlflow_client,
)
from deployments.models import ModelAlias, ModelVersion

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_registers_its_lightgbm_model_through_the_mlflow_client(
    live_server, alice, settings, tmp_path
):
    settings.ARTIFACT_FILE_ROOTS = [str(tmp_path)]
    registered = register_with_mlflow_client(live_server.url, tmp_path, alice)
    assert (registered.name, registered.version) == (MODEL, "1")
    version = ModelVersion.objects.select_related("model", "registered_by").get()
    assert version.model.name == MODEL and version.registered_by == alice
    assert version.artifact_uri == (tmp_path / MODEL).resolve().as_uri()
    assert version.flavor == Flavor.MLFLOW
    assert (tmp_path / MODEL / "MLmodel").exists()
    assert ModelAlias.objects.get(model__name=MODEL, alias=ALIAS).version == version
    assert not alice.api_tokens.active().exists()  # the job's token is revoked after
