import pytest

from deployments import services
from tests.conftest import stop_model_servers
from tests.factories import register_iris_version, validated


@pytest.fixture(autouse=True)
def stop_model_servers_after_each_test():
    yield
    stop_model_servers()


@pytest.fixture
def ready_version(alice):
    """A validated, ready iris version (v1) registered by Alice."""
    model = services.create_model(alice, name="iris", team="botany")
    return validated(register_iris_version(alice, model, metrics={"accuracy": 0.9}))


@pytest.fixture
def staging(bob):
    return services.create_target(bob, name="iris-staging", environment="staging")
