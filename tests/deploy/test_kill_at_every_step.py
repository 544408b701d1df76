"""Kill the deploy worker with SIGKILL at every step of a deploy job in turn, on the real
local backend: after each kill, the reconciler brings every deployment to a final state,
no model server runs that the database does not call live, and the previous version
serves until the new one is live.

The worker kills itself (its whole process group) when the job reaches the named step
(deployments.steps, armed by DEPLOY_CRASH_AT in the worker's environment), so each kill
lands exactly where it is meant to, with no timing guesses. The reconciler is called with
its clock a lease ahead: what it would do at its next beat after the lease ran out.

One worker per step, all started at once, each on a queue of its own: the test sends the
step's deploy job there, so the boots overlap and no other worker can take the job."""

import os
import signal
import subprocess
from datetime import timedelta
from itertools import cycle

import httpx
import pytest
from django.conf import settings
from django.utils import timezone

from deployments import services, steps
from deployments.choices import DeploymentState as State
from deployments.models import Deployment
from deployments.tasks import run_deployment_task
from mlops_portal.celery import app
from mlops_portal.core import outbox
from tests.conftest import running_model_servers, start_celery_worker, wait_for_worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
LIVE_BY_THEN = {"went_live", "stopped_old"}  # steps reached after the switch committed


def queue_for(step) -> str:
    return f"dies-at-{step}-{os.getpid()}"


class StepWorkers:
    """A worker per step, each dying at its step; deploy jobs go to `self.step`'s queue."""

    def __init__(self, tmp_path):
        self.by_step = {step: start_worker_dying_at(step, tmp_path) for step in steps.STEPS}
        for worker in self.by_step.values():
            wait_for_worker(app, worker.node, worker, worker.log_path)
        self.step = None

    def enqueue(self, task, *args, **options):
        """Deploy jobs go through the outbox to the dying worker of `self.step`; before
        the first step, the test runs the job in-process and nothing is queued."""
        if task is run_deployment_task:
            if not self.step:
                return None
            options["queue"] = queue_for(self.step)
        return self.outbox_enqueue(task, *args, **options)

    def stop(self):
        for worker in self.by_step.values():
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        with app.connection_for_write() as connection:
            for step in steps.STEPS:
                connection.default_channel.queue_delete(queue_for(step))


@pytest.fixture
def workers(tmp_path, monkeypatch):
    started = StepWorkers(tmp_path)
    started.outbox_enqueue = outbox.enqueue
    monkeypatch.setattr(outbox, "enqueue", started.enqueue)
    yield started
    started.stop()


def start_worker_dying_at(step, tmp_path) -> subprocess.Popen:
    return start_celery_worker(
        f"{queue_for(step)}@localhost", queue_for(step), tmp_path / f"worker-{step}.log",
        env={"DEPLOY_CRASH_AT": step}, own_group=True,
    )  # fmt: skip


def serving_version(deployment) -> int:
    return httpx.get(f"{deployment.endpoint}/health", timeout=2).json()["version"]


def assert_consistent(target):
    """Every deployment final; the only model server running is the live one's."""
    rows = list(Deployment.objects.filter(target=target))
    assert [(row.pk, row.state) for row in rows if not row.is_final] == []
    live = Deployment.objects.live().get(target=target)
    assert running_model_servers() == {live.backend_state["pid"]}
    assert serving_version(live) == live.version.number
    assert not Deployment.objects.filter(stop_pending=True).exists()
    return live


def test_a_worker_killed_at_any_step_leaves_one_server_the_live_one(
    workers, alice, ready_version, second_version, staging
):
    live = services.request_deployment(alice, version=ready_version, target=staging, reason="v1")
    assert services.run_deployment(live.pk) == State.SUCCEEDED  # in-process, nothing killed
    live.refresh_from_db()
    versions = cycle([second_version, ready_version])

    for step in steps.STEPS:
        worker = workers.by_step[step]
        workers.step = step
        new = services.request_deployment(
            alice, version=next(versions), target=staging, reason=f"killed at {step}"
        )
        try:
            assert worker.wait(timeout=60) == -signal.SIGKILL, worker.log_path.read_text()
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
        # The worker is gone. Whatever step it died at, a version serves: the old one
        # until the switch committed, the new one after.
        expected_live = new if step in LIVE_BY_THEN else live
        assert Deployment.objects.live().get(target=staging).pk == expected_live.pk, step
        expected_live.refresh_from_db()
        assert serving_version(expected_live) == expected_live.version.number

        services.reconcile_deployments(
            now=timezone.now() + timedelta(seconds=settings.DEPLOY_LEASE_SECONDS + 1)
        )
        live = assert_consistent(staging)
        new.refresh_from_db()
        assert new.state == (State.SUCCEEDED if step in LIVE_BY_THEN else State.FAILED), step
