"""A check's incident recovers when a redeploy or a rollback fixes the endpoint: a real
worker starts real model servers, the check probes them for real, time is moved, not
waited for."""

import itertools
import os
import signal
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from deployments import services
from deployments.backends.local import is_model_server
from deployments.choices import DeploymentState as State
from deployments.models import Deployment
from monitoring.choices import CheckState, IncidentState
from monitoring.models import HealthCheck, Incident
from monitoring.services import checks, incidents
from tests.conftest import wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

_later = itertools.count(1)


def probe(check):
    """One dispatcher run, as beat triggers it, a few minutes later each time (so the check
    is due again), against the real model server; return the check as it is now."""
    checks.run_probes(now=timezone.now() + timedelta(minutes=5 * next(_later)))
    check.refresh_from_db()
    return check


def settled(deployment_id):
    deployment = Deployment.objects.get(pk=deployment_id)
    return deployment if deployment.state in (State.SUCCEEDED, State.FAILED) else None


def went_live(deployment):
    """Wait for the job to make `deployment` live and point the target's check at it (which
    it does just after the state change commits)."""
    done = wait_until(lambda: settled(deployment.pk), timeout=60)
    assert done.state == State.SUCCEEDED, done.failure_reason
    followed = HealthCheck.objects.filter(
        target=done.target, follows_target=True, url=f"{done.endpoint}/health"
    )
    wait_until(followed.exists, timeout=10)
    return done


def kill_model_server(deployment):
    """The live model server crashes: its port closes, /health is refused."""
    pid = deployment.backend_state["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not is_model_server(pid), timeout=10)


def fail_until_down(check):
    for _ in range(check.failures_before_down):
        check = probe(check)
    assert check.state == CheckState.DOWN
    return Incident.objects.get(health_check=check)


def assert_recovers(incident, check, message):
    """Up again: mitigated at once with `message` on the timeline, resolved after the quiet
    period."""
    assert check.state == CheckState.UP
    incident.refresh_from_db()
    assert incident.state == IncidentState.MITIGATED
    assert incident.events.filter(message=message).exists()
    assert checks.resolve_quiet_incidents() == 0  # not quiet long enough yet
    quiet = timedelta(seconds=settings.INCIDENT_QUIET_PERIOD_SECONDS + 1)
    assert checks.resolve_quiet_incidents(now=timezone.now() + quiet) == 1
    incident.refresh_from_db()
    assert incident.state == IncidentState.RESOLVED
    assert incident.health_check == check


def test_a_redeploy_that_fixes_the_endpoint_resolves_the_incident(
    celery_worker_process, alice, bob, ready_version, staging
):
    first = went_live(services.request_deployment(alice, version=ready_version, target=staging,
                                                  reason="First"))  # fmt: skip
    check = HealthCheck.objects.get(target=staging, follows_target=True)
    assert probe(check).state == CheckState.UP
    kill_model_server(first)
    incident = fail_until_down(check)
    assert incident.deployment == first
    incidents.acknowledge(bob, incident, "Looking.")

    redeploy = services.request_deployment(
        alice, version=ready_version, target=staging, reason="Restart the crashed server"
    )
    redeploy = went_live(redeploy)
    check.refresh_from_db()
    assert (check.state, check.url) == (CheckState.UNKNOWN, f"{redeploy.endpoint}/health")
    assert_recovers(
        incident,
        probe(check),
        f"{check.name} is up again after deployment #{redeploy.pk} (iris v1) went live.",
    )


def test_an_auto_rollback_that_fixes_the_endpoint_resolves_the_incident(
    celery_worker_process, alice, bob, ready_version, second_version
):
    target = services.create_target(
        bob, name="iris-canary", environment="staging", auto_rollback=True,
        verification_window_seconds=600,
    )  # fmt: skip
    went_live(services.request_deployment(alice, version=ready_version, target=target,
                                          reason="v1"))  # fmt: skip
    bad = went_live(services.request_deployment(alice, version=second_version, target=target,
                                                reason="v2"))  # fmt: skip
    check = HealthCheck.objects.get(target=target, follows_target=True)
    assert probe(check).state == CheckState.UP
    kill_model_server(bad)
    incident = fail_until_down(check)  # opens the incident and requests the rollback

    rollback = went_live(Deployment.objects.get(rollback_of=bad))
    assert rollback.version == ready_version
    incident.refresh_from_db()
    assert incident.state == IncidentState.OPEN  # nobody acknowledged it; still open
    assert_recovers(
        incident,
        probe(check),
        f"{check.name} is up again after rollback #{rollback.pk} (to iris v1) went live.",
    )
