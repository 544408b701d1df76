"""The reconciler owns every process a deployment started: going live marks the replaced
deployment `stop_pending` in the same transaction, and whoever survives (the job, or the
reconciler after it) stops the old model server and records it on its timeline.

The job runs in-process here; a `WorkerDied` raised at a named step (deployments.steps)
stands for the worker being killed there: nothing after that step runs. The same steps
with a real worker killed by SIGKILL are in test_kill_at_every_step.py."""

from datetime import timedelta

import httpx
import pytest
from django.conf import settings
from django.utils import timezone

from deployments import services
from deployments.backends.local import is_model_server
from deployments.choices import DeploymentState as State
from deployments.models import Deployment

pytestmark = pytest.mark.django_db(transaction=True)


class WorkerDied(BaseException):
    """Not an Exception: the job's own `except Exception` must not catch it."""


@pytest.fixture
def die_at(monkeypatch):
    def arm(step):
        def reached(name):
            if name == step:
                raise WorkerDied(step)

        monkeypatch.setattr("deployments.steps.reached", reached)

    return arm


def request(alice, version, target):
    return services.request_deployment(alice, version=version, target=target, reason="x")


def deploy_now(alice, version, target):
    deployment = request(alice, version, target)
    services.run_deployment(deployment.pk)
    deployment.refresh_from_db()
    return deployment


def after_a_lease():
    """The clock a lease after now: a job that was alive would have finished by then."""
    return timezone.now() + timedelta(seconds=settings.DEPLOY_LEASE_SECONDS + 1)


def notes(deployment):
    return list(deployment.events.filter(kind="note").values_list("message", flat=True))


def test_the_job_stops_the_replaced_server_and_says_so_on_its_timeline(
    alice, ready_version, second_version, staging
):
    old = deploy_now(alice, ready_version, staging)
    new = deploy_now(alice, second_version, staging)
    old.refresh_from_db()
    assert (old.state, old.stop_pending) == (State.SUPERSEDED, False)
    assert not is_model_server(old.backend_state["pid"])
    assert notes(old) == [f"Model server stopped (pid {old.backend_state['pid']})."]
    assert new.state == State.SUCCEEDED


def test_a_worker_dead_after_going_live_leaves_the_old_server_to_the_reconciler(
    alice, ready_version, second_version, staging, die_at
):
    old = deploy_now(alice, ready_version, staging)
    die_at("went_live")
    new = request(alice, second_version, staging)
    with pytest.raises(WorkerDied):
        services.run_deployment(new.pk)
    old.refresh_from_db()
    # Committed together: the new one live, the old one superseded with its stop pending.
    assert Deployment.objects.get(pk=new.pk).state == State.SUCCEEDED
    assert (old.state, old.stop_pending) == (State.SUPERSEDED, True)
    assert is_model_server(old.backend_state["pid"])

    # Within a lease the job might still be alive and stopping it: the reconciler waits.
    assert services.reconcile_deployments()["stopped"] == 0
    assert services.reconcile_deployments(now=after_a_lease())["stopped"] == 1
    old.refresh_from_db()
    assert old.stop_pending is False
    assert not is_model_server(old.backend_state["pid"])
    assert notes(old) == [f"Model server stopped (pid {old.backend_state['pid']})."]
    assert services.reconcile_deployments(now=after_a_lease())["stopped"] == 0


def test_a_server_started_by_a_job_that_died_before_going_live_is_stopped(
    alice, ready_version, second_version, staging, die_at
):
    old = deploy_now(alice, ready_version, staging)
    die_at("deployed")  # the new server answers /health; nothing is live yet
    new = request(alice, second_version, staging)
    with pytest.raises(WorkerDied):
        services.run_deployment(new.pk)
    new.refresh_from_db()
    assert new.state == State.RUNNING and is_model_server(new.backend_state["pid"])

    assert services.reconcile_deployments(now=after_a_lease())["failed"] == 1
    new.refresh_from_db()
    assert (new.state, new.stop_pending) == (State.FAILED, False)
    assert not is_model_server(new.backend_state["pid"])
    assert f"Model server stopped (pid {new.backend_state['pid']})." in notes(new)
    old.refresh_from_db()
    assert old.state == State.SUCCEEDED
    assert httpx.get(f"{old.endpoint}/health").json()["version"] == 1


def test_a_server_whose_deployment_ended_while_it_started_is_stopped_by_the_job(
    alice, ready_version, staging, monkeypatch
):
    """The reconciler failed a slow job's deployment before the job saved the pid: the
    job must not leave a server that no row knows of."""
    deployment = request(alice, ready_version, staging)
    started = []
    real_start = type(services.rollouts.backend_for(staging)).start_process

    def start_then_lose_the_row(self, deployment, *args):
        process = real_start(self, deployment, *args)
        started.append(process.pid)
        Deployment.objects.filter(pk=deployment.pk).update(state=State.FAILED)
        return process

    monkeypatch.setattr(
        "deployments.backends.local.LocalBackend.start_process", start_then_lose_the_row
    )
    services.run_deployment(deployment.pk)
    assert started and not is_model_server(started[0])
    assert Deployment.objects.get(pk=deployment.pk).state == State.FAILED


def test_the_webhook_backend_clears_its_stop_without_a_note(
    alice, ready_version, second_version, webhook_target, cd_system
):
    old = deploy_now(alice, ready_version, webhook_target)
    deploy_now(alice, second_version, webhook_target)
    old.refresh_from_db()
    assert (old.state, old.stop_pending) == (State.SUPERSEDED, False)
    assert notes(old) == []  # the CD system replaced it; the portal stopped nothing


def test_the_migration_hands_servers_orphaned_before_it_to_the_reconciler(
    alice, ready_version, second_version, staging
):
    from importlib import import_module

    from django.apps import apps

    migration = import_module("deployments.migrations.0004_queue_policy_stop_pending")
    orphan = request(alice, ready_version, staging)
    never_started = request(alice, second_version, staging)
    Deployment.objects.filter(pk=orphan.pk).update(
        state=State.SUPERSEDED, backend_state={"pid": 2**22 + 1}
    )
    Deployment.objects.filter(pk=never_started.pk).update(state=State.FAILED)
    migration.mark_ended_servers_stop_pending(apps, None)
    assert Deployment.objects.get(pk=orphan.pk).stop_pending is True
    assert Deployment.objects.get(pk=never_started.pk).stop_pending is False
    # A pid that no longer runs a model server is left alone; the flag is cleared.
    assert services.reconcile_deployments(now=after_a_lease())["stopped"] == 1
    assert Deployment.objects.get(pk=orphan.pk).stop_pending is False
