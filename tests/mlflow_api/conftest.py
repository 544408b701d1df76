import itertools

import pytest
from mlflow import MlflowClient

from tests.registry.conftest import artifact_server  # noqa: F401  (shared fixture)


@pytest.fixture
def mlflow_for(live_server, monkeypatch, api_client_for):
    """The stock MlflowClient pointed at the live portal, as `user` with an API token in
    MLFLOW_TRACKING_TOKEN (how a training job is set up)."""
    from mlops_portal.core import tokens

    made = itertools.count(1)

    def make(user) -> MlflowClient:
        _, secret = tokens.create_token(user, f"mlflow-{user.username}-{next(made)}")
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", secret)
        return MlflowClient(tracking_uri=live_server.url, registry_uri=live_server.url)

    return make
