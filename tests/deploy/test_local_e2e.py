"""End to end on the local backend: a real worker on Redis starts real model-server
processes; requests, approvals and rollbacks go through the services as pages do."""

import httpx
import joblib
import pytest

from deployments import services
from deployments.backends.local import is_model_server
from deployments.choices import DeploymentState as State
from deployments.models import Deployment
from tests.conftest import wait_until
from tests.factories import iris_artifact

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def settled(deployment_id):
    deployment = Deployment.objects.get(pk=deployment_id)
    return deployment if deployment.state in (State.SUCCEEDED, State.FAILED) else None


def deploy(requester, approver, version, target, reason="Ship it"):
    deployment = services.request_deployment(
        requester, version=version, target=target, reason=reason
    )
    services.approve_deployment(approver, deployment, comment="OK")
    done = wait_until(lambda: settled(deployment.pk), timeout=60)
    assert done.state == State.SUCCEEDED, done.failure_reason
    return done


def predict(endpoint, rows):
    response = httpx.post(f"{endpoint}/predict", json={"instances": rows}, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_request_approve_serve_replace_and_roll_back(
    celery_worker_process, alice, bob, erin, ready_version, second_version, production, tmp_path
):
    artifact, _, _, sample = iris_artifact()
    (tmp_path / "m.joblib").write_bytes(artifact)
    expected = joblib.load(tmp_path / "m.joblib").predict(sample).tolist()

    first = deploy(alice, bob, ready_version, production)
    assert predict(first.endpoint, sample) == expected
    log = list(first.log_lines.values_list("message", flat=True))
    assert any("answers /health" in line for line in log)

    second = deploy(alice, bob, second_version, production)
    first.refresh_from_db()
    assert first.state == State.SUPERSEDED
    # Blue/green: the old process is stopped right after the switch.
    wait_until(lambda: not is_model_server(first.backend_state["pid"]), timeout=10)
    assert httpx.get(f"{second.endpoint}/health").json()["version"] == 2

    rollback = services.rollback_deployment(bob, second, reason="Accuracy dropped in prod.")
    services.approve_deployment(erin, rollback, comment="Agreed")
    restored = wait_until(lambda: settled(rollback.pk), timeout=60)
    assert restored.state == State.SUCCEEDED, restored.failure_reason
    second.refresh_from_db()
    assert second.state == State.ROLLED_BACK
    assert httpx.get(f"{restored.endpoint}/health").json()["version"] == 1
    assert predict(restored.endpoint, sample) == expected
    assert Deployment.objects.live().filter(target=production).get() == restored
