"""The `kserve` backend end to end: a real Celery worker runs the deploy jobs, its client
talks to the stand-in API server started by this test process."""

import pytest

from deployments import services
from deployments.backends.kserve import OWNER_ANNOTATION
from deployments.choices import DeploymentState as State
from deployments.models import Deployment
from tests.conftest import wait_until
from tests.deploy.kube_standin import KubeStandIn

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def settled(deployment_id):
    deployment = Deployment.objects.get(pk=deployment_id)
    return deployment if deployment.state in (State.SUCCEEDED, State.FAILED) else None


def test_deploy_replace_and_roll_back_through_the_worker(
    celery_worker_process, alice, bob, ready_version, second_version
):
    kube = KubeStandIn(ready_delay=0.5).start()
    try:
        target = services.create_target(
            bob, name="iris-kserve", environment="staging", backend="kserve",
            backend_settings={"service_name": "iris", "kubeconfig": kube.kubeconfig()},
        )  # fmt: skip
        first = services.request_deployment(alice, version=ready_version, target=target, reason="a")
        first = wait_until(lambda: settled(first.pk), timeout=60)
        assert first.state == State.SUCCEEDED, first.failure_reason
        assert first.endpoint == "http://iris.default.example.com"

        second = services.request_deployment(
            alice, version=second_version, target=target, reason="b"
        )
        second = wait_until(lambda: settled(second.pk), timeout=60)
        assert second.state == State.SUCCEEDED, second.failure_reason

        rollback = services.rollback_deployment(bob, second, reason="Accuracy dropped.")
        rollback = wait_until(lambda: settled(rollback.pk), timeout=60)
        assert rollback.state == State.SUCCEEDED, rollback.failure_reason
        live = kube.get("default", "iris")
        assert live["spec"] == first.backend_state["applied_spec"]
        assert live["metadata"]["annotations"][OWNER_ANNOTATION] == str(rollback.pk)
        assert [verb for verb, _ in kube.manifests] == ["create", "patch", "patch"]
    finally:
        kube.stop()
    assert kube.rejected == []
