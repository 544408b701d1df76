"""Drift end to end on real PostgreSQL: logged traffic (written as the collector writes it),
the real drift job, the real rule evaluation and incident automation."""

from datetime import timedelta

import pytest
from django.utils import timezone

from deployments import services as deploy
from monitoring import tasks
from monitoring.choices import DriftMethod, DriftStatus, DriftSubject, IncidentState, RuleState
from monitoring.models import DriftReference, DriftScore, Incident
from monitoring.services import alerts, checks, drift
from tests.factories import register_iris_version, validated
from tests.monitoring.conftest import go_live
from tests.monitoring.drift_helpers import HOUR, iris_reference_csv, iris_traffic, log_traffic


@pytest.fixture
def live_iris(alice, bob, iris):
    """Iris v1 with the iris data set as its reference data, live on a production target."""
    version = validated(register_iris_version(alice, iris, reference_data=iris_reference_csv()))
    target = deploy.create_target(bob, name="iris-prod", environment="production")
    return go_live(alice, version, target, "http://127.0.0.1:9/")


def psi_of(version, end, feature):
    return DriftScore.objects.get(
        version=version, window_end=end, feature=feature, method=DriftMethod.PSI
    )


def test_shifted_inputs_open_one_incident_which_resolves_when_they_are_normal_again(
    live_iris, bob, iris, settings
):
    settings.INCIDENT_QUIET_PERIOD_SECONDS = 0
    rule = alerts.create_rule(
        bob, name="iris inputs drift", model=iris, metric="drift_max", comparison=">",
        threshold=0.25, for_minutes=60, severity="sev2",
    )  # fmt: skip
    start = (timezone.now() - 3 * HOUR).replace(second=0, microsecond=0)
    version = live_iris.version

    # Hour 1: normal traffic. The window is scored; nothing fires.
    log_traffic(live_iris, iris_traffic(400, seed=1), start, start + HOUR)
    assert drift.compute_drift(start + HOUR) == {"drift_scored": 1, "drift_skipped": 0}
    assert alerts.evaluate_rules(start + HOUR) == {"firing": 0, "quiet": 1}
    assert psi_of(version, start + HOUR, "petal_length").status == DriftStatus.OK
    assert not Incident.objects.exists()

    # Hour 2: petal lengths shifted by 3 cm. PSI crosses 0.25; one incident opens.
    log_traffic(live_iris, iris_traffic(400, seed=2, shift={"petal_length": 3.0}),
                start + HOUR, start + 2 * HOUR)  # fmt: skip
    drift.compute_drift(start + 2 * HOUR)
    shifted = psi_of(version, start + 2 * HOUR, "petal_length")
    assert shifted.score > 0.25 and shifted.status == DriftStatus.DRIFT
    assert psi_of(version, start + 2 * HOUR, "sepal_width").status == DriftStatus.OK
    ks = DriftScore.objects.get(version=version, window_end=start + 2 * HOUR,
                                feature="petal_length", method=DriftMethod.KS)  # fmt: skip
    assert ks.p_value < 0.001
    assert alerts.evaluate_rules(start + 2 * HOUR) == {"firing": 1, "quiet": 0}
    alerts.evaluate_rules(start + 2 * HOUR + timedelta(minutes=1))  # still firing
    incident = Incident.objects.get()
    assert incident.alert_rule == rule and incident.deployment == live_iris
    assert incident.severity == "sev2" and incident.state == IncidentState.OPEN
    evidence = incident.events.get(kind="evidence")
    assert f"drift_max = {shifted.score:.2f} over the last 60 min" in evidence.message

    # Hour 3: normal again. The rule is quiet, the incident mitigated, then resolved.
    log_traffic(live_iris, iris_traffic(400, seed=3), start + 2 * HOUR, start + 3 * HOUR)
    drift.compute_drift(start + 3 * HOUR)
    assert alerts.evaluate_rules(start + 3 * HOUR) == {"firing": 0, "quiet": 1}
    rule.refresh_from_db()
    assert rule.state == RuleState.OK and rule.last_value < 0.1
    incident.refresh_from_db()
    assert incident.state == IncidentState.MITIGATED
    assert checks.resolve_quiet_incidents() == 1
    incident.refresh_from_db()
    assert incident.state == IncidentState.RESOLVED
    assert Incident.objects.count() == 1


def test_prediction_drift_is_measured_against_the_first_window(live_iris):
    start = (timezone.now() - 2 * HOUR).replace(second=0, microsecond=0)
    log_traffic(live_iris, iris_traffic(300, seed=4), start, start + HOUR)
    drift.compute_drift(start + HOUR)  # the baseline: no prediction score yet
    reference = DriftReference.objects.get(version=live_iris.version)
    assert reference.prediction["kind"] == "categorical"  # three classes
    assert not DriftScore.objects.filter(subject=DriftSubject.PREDICTION).exists()

    # Long petals: the model now says "virginica" (2) for nearly everything.
    log_traffic(live_iris, iris_traffic(300, seed=5, shift={"petal_length": 3.0,
                                                              "petal_width": 1.5}),
                start + HOUR, start + 2 * HOUR)  # fmt: skip
    drift.compute_drift(start + 2 * HOUR)
    predictions = DriftScore.objects.get(subject=DriftSubject.PREDICTION, method=DriftMethod.PSI)
    assert predictions.status == DriftStatus.DRIFT
    chi2 = DriftScore.objects.get(subject=DriftSubject.PREDICTION, method=DriftMethod.CHI2)
    assert chi2.p_value < 0.001


def test_a_feature_rule_watches_only_its_feature(live_iris, bob, iris):
    sepal = alerts.create_rule(bob, name="sepal width", model=iris, metric="drift_feature",
                               feature="sepal_width", threshold=0.25, for_minutes=60)  # fmt: skip
    petal = alerts.create_rule(bob, name="petal length", model=iris, metric="drift_feature",
                               feature="petal_length", threshold=0.25, for_minutes=60)  # fmt: skip
    end = timezone.now().replace(second=0, microsecond=0)
    log_traffic(live_iris, iris_traffic(300, seed=6, shift={"petal_length": 3.0}),
                end - HOUR, end)  # fmt: skip
    drift.compute_drift(end)
    alerts.evaluate_rules(end)
    sepal.refresh_from_db()
    petal.refresh_from_db()
    assert (sepal.state, petal.state) == (RuleState.OK, RuleState.FIRING)
    assert Incident.objects.get().alert_rule == petal


def test_too_few_rows_are_not_scored(live_iris, settings):
    settings.DRIFT_MIN_ROWS = 100
    end = timezone.now().replace(second=0, microsecond=0)
    log_traffic(live_iris, iris_traffic(99, seed=7), end - HOUR, end)
    assert drift.compute_drift(end) == {"drift_scored": 0, "drift_skipped": 1}
    assert not DriftScore.objects.exists()


def test_the_celery_task_scores_the_last_hour_and_evaluates_the_rules(live_iris, bob, iris):
    alerts.create_rule(bob, name="iris drift", model=iris, metric="drift_max", threshold=0.25,
                       for_minutes=60)  # fmt: skip
    now = timezone.now()
    log_traffic(live_iris, iris_traffic(200, seed=8, shift={"sepal_length": 4.0}),
                now - timedelta(minutes=50), now - timedelta(minutes=1))  # fmt: skip
    outcome = tasks.compute_drift()
    assert outcome == {"drift_scored": 1, "drift_skipped": 0, "firing": 1, "quiet": 0}


def test_the_sample_input_is_the_reference_without_a_file(alice, bob, iris):
    version = validated(register_iris_version(alice, iris))
    reference = drift.reference_for(version)
    assert reference.source == "sample_input" and reference.rows == len(version.sample_input)
    assert [f["name"] for f in reference.features] == [f"feature_{i}" for i in range(1, 5)]


def test_the_version_page_shows_the_drift_table_and_chart(client, carol, live_iris):
    end = timezone.now().replace(second=0, microsecond=0)
    log_traffic(live_iris, iris_traffic(300, seed=9), end - 2 * HOUR, end - HOUR)
    drift.compute_drift(end - HOUR)
    log_traffic(live_iris, iris_traffic(300, seed=10, shift={"petal_length": 3.0}),
                end - HOUR, end)  # fmt: skip
    drift.compute_drift(end)
    client.force_login(carol)
    page = client.get(live_iris.version.get_absolute_url()).content.decode()
    table = page.split('data-testid="drift-table"')[1].split("</table>")[0]
    rows = table.split("<tr>")[2:]  # after the header
    assert "<code>petal_length</code>" in rows[0] and "Drift" in rows[0]  # most drifted first
    assert "Kolmogorov-Smirnov" in rows[0]
    assert "<em>predictions</em>" in rows[-1]
    assert "Drift (PSI) per window, last 7 days" in page  # the chart
    assert "reference/" in page  # the reference file is named
