"""Drift through the real path: the iris model deployed to a local target by the real worker,
its model server sampling every request into the Redis stream, a real `celery beat` sending
the collector on a short schedule to the real worker, the real drift job and the real rule
evaluation on PostgreSQL. Normal traffic, shifted traffic, normal again: no incident, then
exactly one naming the deployment, then mitigated and resolved.

The one test-only move: the drift window is the last DRIFT_WINDOW_MINUTES (an hour) of
logged rows, so each phase's collected rows are moved back in time (`logged_at` only, the
rows themselves are the server's) into an hour of their own, and the drift job and the rule
evaluation are called with that hour's end as `now` (the arguments the beat job leaves at
the current time). Beat's own drift and scrape entries are stretched to a day here, so they
do not evaluate the rule at the same moment as the test."""

import subprocess
import sys
from datetime import timedelta

import httpx
import pytest
from django.conf import settings
from django.db.models import F, Max
from django.utils import timezone

from deployments import services as deploy
from deployments.backends import backend_for
from deployments.choices import DeploymentState
from deployments.models import Deployment
from monitoring.choices import DriftMethod, DriftStatus, IncidentSource, IncidentState, RuleState
from monitoring.models import DriftScore, Incident, LoggedPrediction
from monitoring.services import alerts, checks, drift
from tests.conftest import ROOT, stop_process, subprocess_env, wait_until
from tests.factories import register_iris_version, validated
from tests.monitoring.drift_helpers import iris_reference_csv, iris_traffic

ROWS_PER_PHASE = 200  # above DRIFT_MIN_ROWS (100)
REQUEST_ROWS = 50
# How far back each phase's rows are moved: far enough apart that no drift window, nor the
# rule's look-back (two drift intervals at most), reaches into another phase's rows.
NORMAL, SHIFTED, NORMAL_AGAIN = timedelta(hours=6), timedelta(hours=3), timedelta(0)


@pytest.fixture
def beat(tmp_path):
    """A real `celery beat` (the portal's schedule on the database scheduler), sending the
    prediction collector every second; stopped by its pid."""
    env = {**subprocess_env(), "PREDICTION_COLLECT_INTERVAL_SECONDS": "1",
           "DRIFT_INTERVAL_SECONDS": "86400",
           "SERVING_SCRAPE_INTERVAL_SECONDS": "86400"}  # fmt: skip
    command = [sys.executable, "-m", "celery", "-A", "mlops_portal", "beat", "--loglevel",
               "INFO", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
               "--pidfile="]  # fmt: skip
    with open(tmp_path / "beat.log", "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    process.log_path = tmp_path / "beat.log"
    yield process
    stop_process(process)


@pytest.fixture
def deployed_iris(celery_worker_process, alice, bob, iris):
    """Iris v1 (the iris data set as its reference data) deployed by the worker to a local
    target that logs every request; its model server is stopped afterwards."""
    version = validated(register_iris_version(alice, iris, reference_data=iris_reference_csv()))
    target = deploy.create_target(bob, name="iris-drift", environment="staging",
                                  backend_settings={"prediction_sample_rate": 1.0})  # fmt: skip
    requested = deploy.request_deployment(alice, version=version, target=target, reason="drift")
    deployment = wait_until(
        lambda: Deployment.objects.filter(pk=requested.pk, state=DeploymentState.SUCCEEDED).first(),
        timeout=60,
    )
    yield deployment
    deployment.refresh_from_db()
    backend_for(target).stop(deployment)


def send_and_collect(deployment, rows) -> tuple[list[str], list]:
    """POST `rows` to the model server, REQUEST_ROWS a request; wait until the collector
    (sent by beat, run by the worker) has written all of them; return the prediction ids
    and the model's answers."""
    ids, answers = [], []
    with httpx.Client(base_url=deployment.endpoint, timeout=30) as client:
        for start in range(0, len(rows), REQUEST_ROWS):
            batch = rows[start : start + REQUEST_ROWS].tolist()
            body = client.post("/predict", json={"instances": batch}).json()
            assert body["logged"] is True
            ids.append(body["prediction_id"])
            answers += body["predictions"]
    collected = LoggedPrediction.objects.filter(prediction_id__in=ids)
    wait_until(lambda: collected.count() == len(rows), timeout=60)
    return ids, answers


def move_back(ids, by: timedelta):
    """Move these requests' logged rows `by` into the past (the test-only move above);
    return the end of the drift window that holds them: the minute after the last one."""
    rows = LoggedPrediction.objects.filter(prediction_id__in=ids)
    rows.update(logged_at=F("logged_at") - by)
    last = rows.aggregate(last=Max("logged_at"))["last"]
    return (last + timedelta(minutes=1)).replace(second=0, microsecond=0)


def psi(version, end, feature="petal_length") -> DriftScore:
    return DriftScore.objects.get(version=version, window_end=end, feature=feature,
                                  method=DriftMethod.PSI)  # fmt: skip


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_shifted_traffic_through_the_real_server_opens_one_incident_which_resolves(
    deployed_iris, beat, stream, bob, iris
):
    live, version = deployed_iris, deployed_iris.version
    rule = alerts.create_rule(bob, name="iris inputs drift", model=iris, metric="drift_max",
                              comparison=">", threshold=0.25, for_minutes=60,
                              severity="sev2")  # fmt: skip

    # Normal traffic: the rows arrive as the server answered them, and score as normal.
    traffic = iris_traffic(ROWS_PER_PHASE, seed=21)
    ids, answers = send_and_collect(live, traffic)
    first = LoggedPrediction.objects.get(prediction_id=ids[0], row=3)
    assert first.features == traffic[3].tolist() and first.prediction == answers[3]
    assert (first.deployment_id, first.version_id) == (live.pk, version.pk)
    end = move_back(ids, NORMAL)
    assert drift.compute_drift(end) == {"drift_scored": 1, "drift_skipped": 0}
    assert psi(version, end).score < 0.25 and psi(version, end).status == DriftStatus.OK
    assert alerts.evaluate_rules(end) == {"firing": 0, "quiet": 1}
    assert not Incident.objects.exists()

    # Petal lengths 3 cm longer: the score crosses the threshold, one incident opens.
    ids, _ = send_and_collect(live, iris_traffic(ROWS_PER_PHASE, seed=22,
                                                 shift={"petal_length": 3.0}))  # fmt: skip
    end = move_back(ids, SHIFTED)
    drift.compute_drift(end)
    shifted = psi(version, end)
    assert shifted.score > 0.25 and shifted.status == DriftStatus.DRIFT
    assert shifted.rows == ROWS_PER_PHASE  # this phase's rows only
    assert alerts.evaluate_rules(end) == {"firing": 1, "quiet": 0}
    assert alerts.evaluate_rules(end + timedelta(minutes=1))["firing"] == 1  # still firing
    incident = Incident.objects.get()  # one, not two
    assert incident.source == IncidentSource.RULE and incident.alert_rule == rule
    assert incident.deployment == live and incident.state == IncidentState.OPEN
    assert f"Likely cause: deployment #{live.pk}" in incident.events.get(to_state="open").message
    evidence = incident.events.get(kind="evidence").message
    assert f"drift_max = {shifted.score:.2f} over the last 60 min" in evidence

    # Normal again: the rule goes quiet, the incident is mitigated, then resolved once the
    # quiet period has passed.
    ids, _ = send_and_collect(live, iris_traffic(ROWS_PER_PHASE, seed=23))
    end = move_back(ids, NORMAL_AGAIN)
    drift.compute_drift(end)
    assert psi(version, end).status == DriftStatus.OK
    assert alerts.evaluate_rules(end) == {"firing": 0, "quiet": 1}
    rule.refresh_from_db()
    assert rule.state == RuleState.OK and rule.last_value < 0.25
    incident.refresh_from_db()
    assert incident.state == IncidentState.MITIGATED
    later = timezone.now() + timedelta(seconds=settings.INCIDENT_QUIET_PERIOD_SECONDS + 1)
    assert checks.resolve_quiet_incidents(later) == 1
    incident.refresh_from_db()
    assert incident.state == IncidentState.RESOLVED
    assert Incident.objects.count() == 1

    # Beat sent the collector (nothing in this test called it).
    assert "Sending due task collect-predictions" in beat.log_path.read_text()
