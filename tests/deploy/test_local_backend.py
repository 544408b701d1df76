"""The local backend run in-process (the job's code, without a broker): failures keep the
previous deployment serving, and the reconciler notices dead model servers."""

import os
import signal
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import timezone

from deployments import services
from deployments.backends import backend_for
from deployments.backends.local import is_model_server
from deployments.choices import DeploymentState as State
from deployments.models import Deployment
from tests.conftest import Sent, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def deploy_now(alice, version, target):
    deployment = services.request_deployment(alice, version=version, target=target, reason="x")
    services.run_deployment(deployment.pk)
    deployment.refresh_from_db()
    return deployment


def test_a_model_server_that_cannot_start_fails_the_deploy_and_the_old_one_keeps_serving(
    alice, ready_version, second_version, staging
):
    live = deploy_now(alice, ready_version, staging)
    assert live.state == State.SUCCEEDED
    second_version.artifact.open("wb").write(b"corrupted after validation")
    failed = deploy_now(alice, second_version, staging)
    assert failed.state == State.FAILED
    assert "The model server exited with status 2" in failed.failure_reason
    live.refresh_from_db()
    assert live.state == State.SUCCEEDED
    assert httpx.get(f"{live.endpoint}/health").json()["version"] == 1


def test_the_reconciler_records_a_dead_model_server_once(alice, ready_version, staging):
    live = deploy_now(alice, ready_version, staging)
    os.kill(live.backend_state["pid"], signal.SIGKILL)
    wait_until(lambda: not is_model_server(live.backend_state["pid"]), timeout=5)
    assert services.reconcile_deployments()["dead_servers"] == 1
    assert services.reconcile_deployments()["dead_servers"] == 0
    note = live.events.filter(kind="note").get()
    assert "is not running" in note.message


@override_settings(DEPLOY_RESEND_QUEUED_SECONDS=0)
def test_the_reconciler_resends_a_queued_job_whose_message_was_lost(
    alice, ready_version, staging, sent_tasks
):
    deployment = services.request_deployment(
        alice, version=ready_version, target=staging, reason="x"
    )
    Deployment.objects.filter(pk=deployment.pk).update(
        queued_at=timezone.now() - timedelta(minutes=5)
    )
    sent_tasks.clear()  # the message sent on request, pretend it was lost
    assert services.reconcile_deployments()["resent"] == 1
    assert sent_tasks == [Sent("deployments.tasks.run_deployment_task", (deployment.pk,), "deploy")]


def test_a_target_with_two_workers_serves_with_two_processes_and_stops_them_all(
    alice, bob, ready_version
):
    target = services.create_target(bob, name="iris-two-workers", environment="staging",
                                    backend_settings={"workers": 2})  # fmt: skip
    live = deploy_now(alice, ready_version, target)
    assert live.state == State.SUCCEEDED
    supervisor = live.backend_state["pid"]
    workers = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    assert len(workers) == 2
    assert httpx.post(f"{live.endpoint}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
                      timeout=10).status_code == 200  # fmt: skip

    stopped = backend_for(target).stop(live)

    assert stopped == f"Model server stopped (pid {supervisor})."

    assert not is_model_server(supervisor)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def test_workers_must_be_between_1_and_16(bob):
    with pytest.raises(ValidationError, match="workers must be between 1 and 16"):
        services.create_target(bob, name="iris-many", environment="staging",
                               backend_settings={"workers": 17})  # fmt: skip
