"""Health checks against real HTTP servers on 127.0.0.1: states, incidents opened and
resolved by themselves, maintenance windows, snoozes, concurrent dispatchers."""

import itertools
import threading
import time
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from deployments import services as deploy
from deployments.choices import DeploymentState
from deployments.models import Deployment
from monitoring.choices import CheckState, IncidentState
from monitoring.models import HealthCheck, Incident, MaintenanceWindow, ProbeResult
from monitoring.services import checks
from tests.factories import register_iris_version, validated
from tests.monitoring.conftest import go_live

_later = itertools.count(1)


def probe_round():
    """One dispatcher run, as beat triggers it, a few minutes later each time."""
    return checks.run_probes(now=timezone.now() + timedelta(minutes=5 * next(_later)))


def refreshed(check):
    check.refresh_from_db()
    return check


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://8.8.8.8/health", "outside HEALTHCHECK_ALLOWED_NETWORKS"),
        ("ftp://127.0.0.1/health", "http"),
        ("file:///etc/passwd", "http"),
    ],
)
def test_a_disallowed_url_is_refused_when_the_check_is_saved(make_check, url, message):
    with pytest.raises(ValidationError) as excinfo:
        make_check(url)
    assert message in excinfo.value.message_dict["url"][0]
    assert not HealthCheck.objects.exists()


def test_only_engineers_manage_checks(alice, endpoint):
    with pytest.raises(PermissionDenied):
        checks.create_check(alice, name="x", url=endpoint.url)


def test_a_timeout_must_be_shorter_than_the_interval(make_check, endpoint):
    with pytest.raises(ValidationError) as excinfo:
        make_check(endpoint.url, interval_seconds=10, timeout_seconds=10)
    assert "shorter than the interval" in excinfo.value.message_dict["timeout_seconds"][0]


def test_a_healthy_endpoint_turns_the_check_up_and_records_latency(make_check, endpoint):
    check = make_check(endpoint.url)
    assert checks.run_probes() == 1
    check = refreshed(check)
    assert check.state == CheckState.UP
    assert check.last_latency_ms > 0
    result = ProbeResult.objects.get()
    assert (result.ok, result.status_code) == (True, 200)
    assert check.next_due_at > timezone.now()
    assert checks.run_probes() == 0  # not due again yet


def test_a_failing_endpoint_opens_one_incident_with_evidence_and_recovery_resolves_it(
    make_check, endpoint
):
    check = make_check(endpoint.url, failures_before_down=2)
    probe_round()
    endpoint.status = 500
    probe_round()
    assert refreshed(check).state == CheckState.UP  # one failure is not down yet
    probe_round()
    assert refreshed(check).state == CheckState.DOWN
    incident = Incident.objects.get()
    assert (incident.state, incident.source, incident.title) == (
        "open",
        "check",
        f"{check.name} is down",
    )
    evidence = incident.events.get(kind="evidence")
    assert [p["status_code"] for p in evidence.data["probes"]] == [500, 500]
    probe_round()
    assert Incident.objects.count() == 1  # still down: no second incident

    endpoint.status = 200
    probe_round()
    incident.refresh_from_db()
    assert incident.state == IncidentState.MITIGATED
    with override_settings(INCIDENT_QUIET_PERIOD_SECONDS=0):
        assert checks.resolve_quiet_incidents() == 1
    incident.refresh_from_db()
    assert incident.state == IncidentState.RESOLVED
    assert incident.time_to_resolve is not None


def test_a_refused_connection_and_a_timeout_count_as_failures(make_check, endpoint):
    slow = make_check(endpoint.url, name="slow", timeout_seconds=0.3, failures_before_down=1)
    endpoint.delay = 1.0
    probe_round()
    assert "timed out" in refreshed(slow).last_error
    endpoint.stop()
    probe_round()
    assert "refused" in refreshed(slow).last_error


def test_one_dead_endpoint_does_not_slow_the_others(make_check, endpoint):
    fast = [make_check(endpoint.url, name=f"fast {i}") for i in range(20)]
    slow_server = type(endpoint)()
    slow_server.delay = 10.0
    try:
        make_check(slow_server.url, name="slow", timeout_seconds=1)
        started = time.monotonic()
        assert probe_round() == 21
        elapsed = time.monotonic() - started
    finally:
        slow_server.stop()
    # The round gives up on the dead one after its 1 s timeout, long before its 10 s answer
    # (the margin is for a loaded machine, not a speed target).
    assert elapsed < 6
    assert all(refreshed(c).state == CheckState.UP for c in fast)


def test_no_incident_while_a_maintenance_window_or_a_snooze_covers_the_check(
    make_check, endpoint, bob
):
    check = make_check(endpoint.url, failures_before_down=1)
    endpoint.status = 503
    window = MaintenanceWindow.objects.create(
        health_check=check, starts_at=timezone.now() - timedelta(minutes=1), reason="upgrade"
    )
    probe_round()
    assert refreshed(check).state == CheckState.DOWN
    assert not Incident.objects.exists()
    window.delete()
    checks.snooze(bob, check, hours=2, reason="known flake, ticket OPS-12")
    probe_round()
    assert not Incident.objects.exists()
    check.snoozed_until = None
    check.save()
    probe_round()  # still down, no window, no snooze: now it opens
    assert Incident.objects.count() == 1


def test_pausing_stops_probes(make_check, endpoint, bob):
    check = make_check(endpoint.url)
    checks.set_paused(bob, check, True)
    assert probe_round() == 0
    assert refreshed(check).state == CheckState.PAUSED
    checks.set_paused(bob, check, False)
    assert probe_round() == 1


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_at_once_never_probe_a_check_twice(make_check, endpoint):
    assert connection.vendor == "postgresql"
    for i in range(30):
        make_check(endpoint.url, name=f"c{i}")
    start = threading.Barrier(2)
    probed = []

    def dispatcher():
        start.wait()
        try:
            probed.append(checks.run_probes())
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(probed) == 30
    assert ProbeResult.objects.count() == 30
    assert endpoint.hits == 30


# --- with deployments -------------------------------------------------------------------


def test_a_live_deployment_gets_a_check_that_names_it_as_the_likely_cause(
    alice, bob, iris, endpoint
):
    target = deploy.create_target(bob, name="iris-prod", environment="production",
                                  requires_approval=False)  # fmt: skip
    v1 = validated(register_iris_version(alice, iris))
    live = go_live(alice, v1, target, endpoint.url.removesuffix("/health"))
    check = HealthCheck.objects.get(target=target, follows_target=True)
    assert check.url == endpoint.url
    check.failures_before_down = 1
    check.save()
    endpoint.status = 500
    probe_round()
    incident = Incident.objects.get()
    assert incident.deployment == live
    assert incident.severity == "sev2"  # production
    assert incident.version == v1


def test_a_deploy_opens_a_maintenance_window_for_its_target(alice, bob, iris, make_check):
    target = deploy.create_target(bob, name="iris-stage", environment="staging")
    check = make_check("http://127.0.0.1:9/health", target=target)
    version = validated(register_iris_version(alice, iris))
    deployment = deploy.request_deployment(alice, version=version, target=target, reason="x")
    checks.begin_deploy_window(deployment)
    assert checks.in_maintenance(check, timezone.now())
    checks.end_deploy_window(deployment)
    assert not checks.in_maintenance(check, timezone.now() + timedelta(seconds=1))


def test_auto_rollback_when_the_new_version_fails_inside_its_verification_window(
    alice, bob, iris, endpoint
):
    target = deploy.create_target(bob, name="iris-auto", environment="staging",
                                  auto_rollback=True, verification_window_seconds=600)  # fmt: skip
    v1 = validated(register_iris_version(alice, iris))
    v2 = validated(register_iris_version(alice, iris))
    go_live(alice, v1, target, "http://127.0.0.1:9")
    bad = go_live(alice, v2, target, endpoint.url.removesuffix("/health"))
    check = HealthCheck.objects.get(target=target)
    check.failures_before_down = 1
    check.save()
    endpoint.status = 500
    probe_round()
    rollback = Deployment.objects.get(rollback_of=bad)
    assert rollback.version == v1
    assert rollback.state == DeploymentState.QUEUED
    assert "Auto-rollback" in rollback.reason
    incident = Incident.objects.get()
    assert incident.events.filter(message__contains=f"#{rollback.pk}").exists()


def test_a_version_page_reports_how_it_behaved_while_live_in_production(
    alice, bob, iris, endpoint, client
):
    from monitoring.behaviour import production_stats
    from monitoring.services import incidents, rollups

    target = deploy.create_target(bob, name="iris-prod", environment="production",
                                  requires_approval=False)  # fmt: skip
    v1 = validated(register_iris_version(alice, iris))
    live = go_live(alice, v1, target, endpoint.url.removesuffix("/health"))
    check = HealthCheck.objects.get(target=target)
    now = timezone.now()
    Deployment.objects.filter(pk=live.pk).update(finished_at=now - timedelta(minutes=10))
    ProbeResult.objects.bulk_create(
        ProbeResult(health_check=check, at=now - timedelta(seconds=i), ok=i % 4 != 0,
                    latency_ms=12.0)
        for i in range(1, 9)
    )  # fmt: skip
    rollups.roll_up_minutes(now - timedelta(minutes=2), now + timedelta(minutes=1))
    incident = incidents.open_incident(bob, title="x", target=target)
    Incident.objects.filter(pk=incident.pk).update(opened_at=now - timedelta(minutes=3))
    [stats] = production_stats(v1)
    assert stats.target == "iris-prod"
    assert stats.probes == 8
    assert stats.availability == 0.75
    assert stats.latency_p50_ms == 12.0
    assert stats.incident_minutes == pytest.approx(3, abs=0.2)
    client.force_login(alice)
    page = client.get(v1.get_absolute_url()).content.decode()
    assert "75.00 %" in page
