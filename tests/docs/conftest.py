import pytest

from docs_app import services


@pytest.fixture
def runbook(alice):
    return services.create_page(
        alice,
        title="Churn runbook",
        body="## Rollback\nRoll back from the deployment page.",
        tags=["runbook"],
    )
