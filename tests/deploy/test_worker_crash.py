"""A deploy worker killed with SIGKILL mid-deploy: the reconciler ends the deployment
consistently and the previous deployment keeps serving."""

import os
import signal

import pytest

from deployments import services
from deployments.choices import DeploymentState as State
from deployments.models import Deployment
from mlops_portal.celery import app
from tests.conftest import start_celery_worker, wait_for_worker, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
LEASE_SECONDS = 2


@pytest.fixture
def killable_worker(celery_worker_process, tmp_path):
    """A second worker, alone on the `deploy` queue, in its own process group."""
    app.control.cancel_consumer("deploy", destination=[celery_worker_process.node], reply=True)
    node = f"killable-{os.getpid()}@localhost"
    worker = start_celery_worker(
        node, "deploy", tmp_path / "killable.log",
        env={"DEPLOY_LEASE_SECONDS": str(LEASE_SECONDS)}, own_group=True,
    )  # fmt: skip
    wait_for_worker(app, node, worker, worker.log_path)
    yield worker
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    app.control.add_consumer("deploy", destination=[celery_worker_process.node], reply=True)


def test_a_worker_killed_mid_deploy_ends_failed_and_the_old_version_keeps_serving(
    killable_worker, alice, ready_version, second_version, webhook_target, cd_system
):
    live = services.request_deployment(
        alice, version=ready_version, target=webhook_target, reason="First"
    )
    wait_until(lambda: Deployment.objects.get(pk=live.pk).state == State.SUCCEEDED)

    cd_system.delay = 30  # the CD system hangs: the job is stuck inside its POST
    doomed = services.request_deployment(
        alice, version=second_version, target=webhook_target, reason="Second"
    )
    wait_until(lambda: len(cd_system.requests) == 2)
    assert Deployment.objects.get(pk=doomed.pk).state == State.RUNNING

    os.killpg(killable_worker.pid, signal.SIGKILL)
    killable_worker.wait()

    def reconciled():
        services.reconcile_deployments()
        return Deployment.objects.get(pk=doomed.pk).state == State.FAILED

    wait_until(reconciled, timeout=LEASE_SECONDS + 10, interval=0.5)
    doomed.refresh_from_db()
    assert "worker was lost" in doomed.failure_reason
    assert doomed.log_lines.last().message.startswith("Reconciler:")
    assert Deployment.objects.get(pk=live.pk).state == State.SUCCEEDED
    assert services.run_deployment(doomed.pk) is None  # a redelivered message does no harm
