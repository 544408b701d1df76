"""Alert rules on serving metrics: a real model server that raises on some inputs, the
scrape, and the rule evaluation opening one incident that names the deployment."""

from datetime import timedelta

import httpx
import joblib
import pytest
from auditlog.models import LogEntry
from django.core.exceptions import ValidationError
from django.utils import timezone

from deployments import services as deploy
from monitoring.choices import IncidentSource, IncidentState, RuleState
from monitoring.models import Incident
from monitoring.services import alerts, checks, serving
from tests.factories import register_iris_version, validated
from tests.monitoring.conftest import go_live
from tests.monitoring.flaky_model import RaisesOnNegativeInput
from tests.serving.test_model_server import start_server, stop_server

GOOD, BAD = [[5.1, 3.5, 1.4, 0.2]], [[-1.0, 3.5, 1.4, 0.2]]


@pytest.fixture
def flaky_server(tmp_path):
    artifact = tmp_path / "flaky.joblib"
    joblib.dump(RaisesOnNegativeInput(), artifact)
    process, url = start_server(artifact, tmp_path / "server.log")
    yield url
    stop_server(process)


def send(url, good=0, bad=0):
    with httpx.Client(base_url=url, timeout=10) as client:
        for rows, n, status in ((GOOD, good, 200), (BAD, bad, 500)):
            for _ in range(n):
                assert client.post("/predict", json={"instances": rows}).status_code == status


def test_an_error_rate_rule_opens_one_incident_naming_the_deployment_then_resolves(
    flaky_server, alice, bob, iris, settings
):
    settings.INCIDENT_QUIET_PERIOD_SECONDS = 0
    target = deploy.create_target(bob, name="iris-prod", environment="production")
    live = go_live(alice, validated(register_iris_version(alice, iris)), target, flaky_server)
    rule = alerts.create_rule(
        bob, name="iris errors", model=iris, metric="error_rate", comparison=">",
        threshold=20, for_minutes=5, severity="sev2",
    )  # fmt: skip
    now = timezone.now()

    send(flaky_server, good=6, bad=4)  # 40 % of the requests fail
    serving.scrape_live_deployments(now)
    assert alerts.evaluate_rules(now) == {"firing": 1, "quiet": 0}
    alerts.evaluate_rules(now + timedelta(seconds=30))  # still firing: still one incident

    incident = Incident.objects.get()
    assert incident.source == IncidentSource.RULE and incident.alert_rule == rule
    assert incident.severity == "sev2" and incident.state == IncidentState.OPEN
    assert incident.deployment == live and incident.target == target
    opened = incident.events.get(to_state="open").message
    assert f"Likely cause: deployment #{live.pk}" in opened
    evidence = incident.events.get(kind="evidence")
    assert evidence.data["probes"][0]["requests"] == 10
    assert evidence.data["probes"][0]["errors"] == 4
    assert "error_rate = 40.00 %" in evidence.message

    later = now + timedelta(minutes=10)  # the bad inputs stop; the window moves on
    send(flaky_server, good=10)
    serving.scrape_live_deployments(later)
    assert alerts.evaluate_rules(later) == {"firing": 0, "quiet": 1}
    incident.refresh_from_db()
    assert incident.state == IncidentState.MITIGATED
    rule.refresh_from_db()
    assert rule.state == RuleState.OK and rule.last_value == 0
    assert checks.resolve_quiet_incidents() == 1
    incident.refresh_from_db()
    assert incident.state == IncidentState.RESOLVED


def test_a_muted_rule_fires_without_an_incident_and_the_reason_is_recorded(
    flaky_server, alice, bob, iris
):
    target = deploy.create_target(bob, name="iris-stage", environment="staging")
    go_live(alice, validated(register_iris_version(alice, iris)), target, flaky_server)
    rule = alerts.create_rule(bob, name="stage errors", target=target, metric="error_rate",
                              threshold=1, for_minutes=1)  # fmt: skip
    with pytest.raises(ValidationError, match="Say why"):
        alerts.set_muted(bob, rule, True)
    alerts.set_muted(bob, rule, True, "load test until 3 pm")

    send(flaky_server, bad=2)
    serving.scrape_live_deployments()
    alerts.evaluate_rules()

    rule.refresh_from_db()
    assert rule.state == RuleState.FIRING and not Incident.objects.exists()
    change = LogEntry.objects.get_for_object(rule).latest("timestamp")
    assert change.actor == bob
    assert change.changes_dict["mute_reason"] == ["", "load test until 3 pm"]


def test_latency_and_request_rate_drop_are_measured_from_the_rollups(alice, bob, iris):
    from monitoring.choices import Resolution
    from monitoring.models import ServingRollup

    target = deploy.create_target(bob, name="iris-dev", environment="staging")
    live = go_live(alice, validated(register_iris_version(alice, iris)), target,
                   "http://127.0.0.1:9/")  # fmt: skip
    now = timezone.now().replace(second=30)
    minute = now.replace(second=0, microsecond=0)
    ServingRollup.objects.bulk_create(
        ServingRollup(deployment=live, version=live.version, resolution=Resolution.MINUTE,
                      bucket_start=minute - timedelta(minutes=i),
                      requests=10 if i < 5 else 40, latency_buckets={"0.1": 9, "1.0": 1})
        for i in range(65)
    )  # fmt: skip
    latency = alerts.create_rule(bob, name="slow", model=iris, metric="latency_p95",
                                 threshold=200, for_minutes=5)  # fmt: skip
    drop = alerts.create_rule(bob, name="quiet", model=iris, metric="request_rate_drop",
                              threshold=50, for_minutes=5)  # fmt: skip

    assert alerts.measure(latency, live.pk, now)["value"] == pytest.approx(550.0)
    assert alerts.measure(drop, live.pk, now)["value"] == pytest.approx(75.0)
    assert alerts.evaluate_rules(now) == {"firing": 2, "quiet": 0}


def test_rules_are_validated(bob, iris):
    with pytest.raises(ValidationError) as error:
        alerts.create_rule(bob, name="", metric="accuracy", threshold=-1, for_minutes=0)
    assert set(error.value.message_dict) == {"name", "model", "metric", "threshold",
                                             "for_minutes"}  # fmt: skip


def test_a_firing_rule_rolls_back_a_deployment_inside_its_verification_window(
    flaky_server, alice, bob, iris
):
    from deployments.choices import DeploymentState
    from deployments.models import Deployment

    target = deploy.create_target(bob, name="iris-auto", environment="staging",
                                  auto_rollback=True, verification_window_seconds=600)  # fmt: skip
    v1 = validated(register_iris_version(alice, iris))
    v2 = validated(register_iris_version(alice, iris))
    go_live(alice, v1, target, "http://127.0.0.1:9")
    bad = go_live(alice, v2, target, flaky_server)
    alerts.create_rule(bob, name="auto errors", target=target, metric="error_rate",
                       threshold=10, for_minutes=5)  # fmt: skip

    send(flaky_server, good=1, bad=3)
    serving.scrape_live_deployments()
    alerts.evaluate_rules()

    rollback = Deployment.objects.get(rollback_of=bad)
    assert rollback.version == v1 and rollback.state == DeploymentState.QUEUED
    incident = Incident.objects.get(source=IncidentSource.RULE)
    assert incident.deployment == bad
    assert incident.events.filter(message__contains=f"#{rollback.pk}").exists()


def test_outside_the_verification_window_a_rule_opens_an_incident_but_rolls_nothing_back(
    flaky_server, alice, bob, iris
):
    from deployments.models import Deployment

    target = deploy.create_target(bob, name="iris-late", environment="staging",
                                  auto_rollback=True, verification_window_seconds=60)  # fmt: skip
    go_live(alice, validated(register_iris_version(alice, iris)), target, "http://127.0.0.1:9")
    bad = go_live(alice, validated(register_iris_version(alice, iris)), target, flaky_server)
    Deployment.objects.filter(pk=bad.pk).update(finished_at=timezone.now() - timedelta(hours=2))
    alerts.create_rule(bob, name="late errors", target=target, metric="error_rate",
                       threshold=10, for_minutes=5)  # fmt: skip

    send(flaky_server, bad=2)
    serving.scrape_live_deployments()
    alerts.evaluate_rules()

    assert Incident.objects.get(source=IncidentSource.RULE).deployment == bad
    assert not Deployment.objects.filter(rollback_of=bad).exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_scrape_task_on_a_real_worker_fires_the_rule(
    celery_worker_process, flaky_server, alice, bob, iris
):
    from monitoring.tasks import scrape_serving_metrics
    from tests.conftest import wait_until

    target = deploy.create_target(bob, name="iris-worker", environment="production")
    live = go_live(alice, validated(register_iris_version(alice, iris)), target, flaky_server)
    alerts.create_rule(bob, name="worker errors", model=iris, metric="error_rate",
                       threshold=20, for_minutes=5, severity="sev2")  # fmt: skip
    send(flaky_server, good=2, bad=2)

    scrape_serving_metrics.delay()

    incident = wait_until(lambda: Incident.objects.filter(source="rule").first(), timeout=30)
    assert incident.deployment_id == live.pk and incident.severity == "sev2"
