"""The prediction log, feedback and live quality: real model servers on 127.0.0.1, the real
Redis stream, a real worker collecting it, the feedback API, the hourly roll-up, the
live-accuracy alert rule and retention."""

import json
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import httpx
import pytest
import redis
from django.conf import settings
from django.test import Client
from django.utils import timezone

from deployments import services as deploy
from deployments.choices import DeploymentState
from deployments.models import Deployment
from deployments.serving.prediction_log import PredictionLog
from mlops_portal.overview.retention import prune_old_records
from monitoring.choices import IncidentState, RuleMetric
from monitoring.models import Incident, LiveQuality, LoggedPrediction
from monitoring.services import alerts, predictions, quality
from tests.conftest import ROOT, free_port, stop_process, wait_until
from tests.factories import iris_artifact, register_iris_version, validated
from tests.monitoring.conftest import go_live

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5],
             [4.9, 3.1, 1.5, 0.1], [6.3, 2.5, 5.0, 1.9]]  # fmt: skip


@pytest.fixture
def version(alice, iris):
    return validated(register_iris_version(alice, iris, metrics={"accuracy": 0.97}))


def logged_rows(deployment, predictions_by_row, at=None):
    """LoggedPrediction rows as the collector writes them: one request per row here."""
    at = at or timezone.now()
    return LoggedPrediction.objects.bulk_create(
        LoggedPrediction(deployment=deployment, version_id=deployment.version_id,
                         prediction_id=f"p{i}", row=0, logged_at=at, features=IRIS_ROWS[i % 5],
                         prediction=prediction)
        for i, prediction in enumerate(predictions_by_row)
    )  # fmt: skip


# --- end to end: server → stream → worker → feedback → live accuracy → rule ---------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_sampled_predictions_are_collected_and_feedback_gives_the_live_accuracy(
    celery_worker_process, stream, alice, bob, version, api_client_for
):
    from monitoring.tasks import collect_predictions

    target = deploy.create_target(bob, name="iris-live", environment="staging",
                                  backend_settings={"prediction_sample_rate": 1.0})  # fmt: skip
    requested = deploy.request_deployment(alice, version=version, target=target, reason="live")
    deployment = wait_until(
        lambda: Deployment.objects.filter(pk=requested.pk, state=DeploymentState.SUCCEEDED).first(),
        timeout=60,
    )
    answers = []
    for _ in range(4):
        response = httpx.post(f"{deployment.endpoint}/predict", json={"instances": IRIS_ROWS})
        body = response.json()
        assert response.headers["X-Prediction-ID"] == body["prediction_id"]
        assert body["logged"] is True  # the target logs every request
        answers.append(body)

    # The server writes its sample off the request path: in the stream within moments.
    wait_until(lambda: stream.xlen(settings.PREDICTION_LOG_STREAM) == 4, timeout=10)
    collect_predictions.delay()
    wait_until(lambda: LoggedPrediction.objects.filter(deployment=deployment).count() == 20)
    first = LoggedPrediction.objects.get(prediction_id=answers[0]["prediction_id"], row=1)
    assert first.features == IRIS_ROWS[1]
    assert first.prediction == answers[0]["predictions"][1]
    assert first.version_id == version.pk

    # Ten labels: the first request's five rows right, the second's five rows right but
    # two, i.e. 8 of 10 right: 80 %.
    labels = [{"prediction_id": answers[0]["prediction_id"], "row": row, "label": label}
              for row, label in enumerate(answers[0]["predictions"])]  # fmt: skip
    second = answers[1]["predictions"]
    labels += [{"prediction_id": answers[1]["prediction_id"], "row": row,
                "label": (label + 1) % 3 if row < 2 else label}
               for row, label in enumerate(second)]  # fmt: skip
    client = api_client_for(alice)
    response = client.post(f"/api/v1/deployments/{deployment.pk}/feedback/", {"labels": labels})
    assert response.status_code == 200, response.content
    assert response.json() == {"deployment": deployment.pk, "recorded": 10}

    # The feedback asked the worker for the version's roll-up.
    hour = wait_until(lambda: LiveQuality.objects.filter(version=version, labelled=10).first())
    assert (hour.labelled, hour.correct, hour.accuracy) == (10, 8, 0.8)
    browser = Client()
    browser.force_login(alice)
    page = browser.get(version.get_absolute_url()).content.decode()
    assert 'data-testid="live-quality-value">80.0 %' in page
    assert "offline accuracy at registration: 0.9700" in page

    rule = alerts.create_rule(bob, name="iris live accuracy", model=version.model,
                              metric=RuleMetric.LIVE_ACCURACY, comparison="<", threshold=90,
                              for_minutes=10)  # fmt: skip
    assert alerts.evaluate_rules()["firing"] == 1
    rule.refresh_from_db()
    assert rule.last_value == pytest.approx(80.0)
    incident = Incident.objects.get(alert_rule=rule)
    assert incident.state == IncidentState.OPEN and incident.deployment_id == deployment.pk
    evidence = incident.events.get(kind="evidence")
    assert "live_accuracy = 80.00 % over the last 10 min" in evidence.message
    assert evidence.data["probes"][0]["labelled"] == 10


# --- feedback: bad input ---------------------------------------------------------------------


@pytest.mark.django_db
def test_feedback_for_an_unknown_prediction_is_a_400_naming_it_and_writes_nothing(
    alice, bob, carol, version, api_client_for
):
    target = deploy.create_target(bob, name="iris-stage", environment="staging")
    deployment = go_live(alice, version, target, "http://127.0.0.1:9")
    logged_rows(deployment, [0, 1])
    url = f"/api/v1/deployments/{deployment.pk}/feedback/"
    client = api_client_for(alice)

    response = client.post(url, {"labels": [{"prediction_id": "p0", "label": 0},
                                            {"prediction_id": "nope", "label": 1}]})  # fmt: skip
    assert response.status_code == 400
    assert "nope[0]" in response.json()["labels"][0]
    assert not LoggedPrediction.objects.filter(label__isnull=False).exists()

    response = client.post(url, {"labels": [{"prediction_id": "p1", "row": 3, "label": 1}]})
    assert response.status_code == 400 and "p1[3]" in response.json()["labels"][0]
    response = client.post(url, {"labels": [{"prediction_id": "p0", "label": [1, 2]}]})
    assert response.status_code == 400 and "label" in json.dumps(response.json())
    response = client.post(url, {"labels": []})
    assert response.status_code == 400 and "labels" in response.json()
    assert client.post("/api/v1/deployments/999999/feedback/", {"labels": []}).status_code == 404
    assert api_client_for(carol).post(url, {"labels": [{"prediction_id": "p0", "label": 0}]}
                                      ).status_code == 403  # fmt: skip
    assert not LoggedPrediction.objects.filter(label__isnull=False).exists()

    response = client.post(url, {"labels": [{"prediction_id": "p0", "label": 0.0},
                                            {"prediction_id": "p1", "label": 2}]})  # fmt: skip
    assert response.status_code == 200
    # A label 0.0 for the whole-number class 0 is that class.
    labels = dict(LoggedPrediction.objects.values_list("prediction_id", "label"))
    assert labels == {"p0": 0, "p1": 2} and isinstance(labels["p0"], int)


@pytest.mark.django_db
def test_a_regressors_live_quality_is_its_mae(alice, bob, iris):
    regressor = validated(register_iris_version(alice, iris, metrics={"mae": 0.5, "r2": 0.9}))
    target = deploy.create_target(bob, name="reg", environment="staging")
    deployment = go_live(alice, regressor, target, "http://127.0.0.1:9")
    logged_rows(deployment, [1.5, 2.0, 3.0])
    for pid, label in (("p0", 1.0), ("p1", 2.5), ("p2", 3.0)):
        quality.record_feedback(alice, deployment, [{"prediction_id": pid, "label": label}])
    assert quality.roll_up([regressor.pk]) == 1
    hour = LiveQuality.objects.get(version=regressor)
    assert hour.mae == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    measured = quality.measure(RuleMetric.LIVE_MAE, deployment.pk,
                               timezone.now() - timedelta(minutes=5), timezone.now())  # fmt: skip
    assert measured["value"] == pytest.approx(1 / 3)
    with pytest.raises(Exception, match="regressor"):
        quality.record_feedback(alice, deployment, [{"prediction_id": "p0", "label": "setosa"}])


# --- the collector -------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_collector_drops_duplicates_and_skips_what_it_cannot_read(alice, bob, version, stream):
    target = deploy.create_target(bob, name="iris-stage", environment="staging")
    deployment = go_live(alice, version, target, "http://127.0.0.1:9")
    entry = {"deployment": deployment.pk, "version": version.pk, "prediction_id": "abc",
             "at": f"{time.time():.6f}", "rows": json.dumps(IRIS_ROWS[:2]),
             "predictions": json.dumps([0, 2])}  # fmt: skip
    name = settings.PREDICTION_LOG_STREAM
    stream.xadd(name, entry)
    stream.xadd(name, entry)  # at-least-once: the same request twice
    stream.xadd(name, {**entry, "rows": "not json"})
    stream.xadd(name, {**entry, "deployment": 999999, "prediction_id": "gone"})
    assert predictions.collect_predictions() == {"entries": 4, "rows": 2, "skipped": 2}
    assert list(LoggedPrediction.objects.values_list("row", "prediction")) == [(0, 0), (1, 2)]
    # Everything was acknowledged: nothing pending, nothing new.
    assert predictions.collect_predictions()["entries"] == 0
    assert stream.xpending(name, predictions.GROUP)["pending"] == 0


@pytest.mark.django_db
def test_a_run_takes_a_bounded_batch_and_the_next_one_the_rest(alice, bob, version, stream):
    target = deploy.create_target(bob, name="iris-stage", environment="staging")
    deployment = go_live(alice, version, target, "http://127.0.0.1:9")
    for i in range(25):
        entry = {"deployment": deployment.pk, "version": version.pk, "prediction_id": f"r{i}",
                 "at": f"{time.time():.6f}", "rows": "[[1, 2]]", "predictions": "[1]"}  # fmt: skip
        stream.xadd(settings.PREDICTION_LOG_STREAM, entry)
    assert predictions.collect_predictions(limit=10)["rows"] == 10
    assert predictions.collect_predictions(limit=10)["rows"] == 10
    assert predictions.collect_predictions(limit=10)["rows"] == 5
    assert LoggedPrediction.objects.count() == 25


# --- the model server's sampler ---------------------------------------------------------------


def counter(counts: dict):
    """A `counts` callback for PredictionLog that adds up into `counts`."""

    def count(outcome, n=1):
        counts[outcome] = counts.get(outcome, 0) + n

    return count


def test_the_sampler_honours_its_rate_roughly():
    client = redis.Redis.from_url(settings.PREDICTION_LOG_URL)
    name = f"test:predictions:{uuid.uuid4().hex}"
    counts = {}
    log = PredictionLog(url="", client=client, stream=name, maxlen=100_000, rate=0.2,
                        deployment_id=1, version_id=1,
                        counts=counter(counts))  # fmt: skip
    try:
        logged = sum(log.maybe_log(f"id{i}", [[1.0]], [0]) for i in range(3000))
        assert log.flush()
        # Binomial(3000, 0.2): mean 600, sd 22; ±5 sd.
        assert 490 <= logged <= 710
        assert client.xlen(name) == logged == counts["written"] == counts["sampled"]
    finally:
        client.delete(name)


def test_the_stream_is_bounded_and_a_full_queue_drops_and_counts():
    client = redis.Redis.from_url(settings.PREDICTION_LOG_URL)
    name = f"test:predictions:{uuid.uuid4().hex}"
    log = PredictionLog(url="", client=client, stream=name, maxlen=1000, rate=1.0,
                        deployment_id=1, version_id=1)  # fmt: skip
    try:
        for i in range(5000):
            log.maybe_log(f"id{i}", [[1.0]], [0])
            if i % 500 == 0:
                log.flush()
        assert log.flush()
        # MAXLEN ~ trims whole stream nodes (100 entries each): a little over the bound.
        assert 1000 <= client.xlen(name) <= 1100
    finally:
        client.delete(name)

    class Stalled:
        def pipeline(self, transaction):
            time.sleep(0.5)
            raise redis.ConnectionError("Redis is down")

    counts = {}
    stalled = PredictionLog(url="", client=Stalled(), stream=name, maxlen=10, rate=1.0,
                            deployment_id=1, version_id=1, queue_size=5,
                            counts=counter(counts))  # fmt: skip
    queued = [stalled.maybe_log(f"id{i}", [[1.0]], [0]) for i in range(50)]
    assert queued.count(True) <= 6 and counts["dropped"] >= 44  # refused at once, not waited


def test_v2_infer_answers_a_prediction_id_and_logs_its_rows(tmp_path):
    """A model server started as the local backend starts it, logging every request."""
    client = redis.Redis.from_url(settings.PREDICTION_LOG_URL)
    name = f"test:predictions:{uuid.uuid4().hex}"
    artifact = tmp_path / "model.joblib"
    artifact.write_bytes(iris_artifact()[0])
    port = free_port()
    env = {"PREDICTION_SAMPLE_RATE": "1", "PREDICTION_LOG_URL": settings.PREDICTION_LOG_URL,
           "PREDICTION_LOG_STREAM": name, "PATH": "/usr/bin:/bin"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.serving.server", "--artifact", str(artifact),
         "--flavor", "sklearn", "--model", "iris", "--version", "1", "--port", str(port),
         "--deployment-id", "7", "--version-id", "9"],
        cwd=ROOT, env=env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{url}/health"), timeout=30)
        body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64",
                            "data": IRIS_ROWS[0] + IRIS_ROWS[1]}]}  # fmt: skip
        response = httpx.post(f"{url}/v2/models/iris/infer", json=body)
        answer = response.json()
        prediction_id = answer["parameters"]["prediction_id"]
        assert response.headers["X-Prediction-ID"] == prediction_id
        assert answer["parameters"]["logged"] is True
        entries = wait_until(lambda: client.xrange(name), timeout=10)
        fields = {k.decode(): v.decode() for k, v in entries[0][1].items()}
        assert (fields["deployment"], fields["version"]) == ("7", "9")
        assert fields["prediction_id"] == prediction_id
        assert json.loads(fields["rows"]) == IRIS_ROWS[:2]
        assert json.loads(fields["predictions"]) == answer["outputs"][0]["data"]
        metrics = httpx.get(f"{url}/metrics").text
        assert 'model_server_prediction_log_total{outcome="written"} 1.0' in metrics
    finally:
        stop_process(process)
        client.delete(name)


def _answers(url) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# --- retention ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_retention_prunes_old_logged_predictions_and_keeps_the_hourly_quality(
    alice, bob, version, settings
):
    settings.PREDICTION_LOG_RETENTION_DAYS = 30
    target = deploy.create_target(bob, name="iris-stage", environment="staging")
    deployment = go_live(alice, version, target, "http://127.0.0.1:9")
    old = timezone.now() - timedelta(days=31)
    logged_rows(deployment, [0, 1], at=old)
    LoggedPrediction.objects.update(label=0, labelled_at=old)
    LoggedPrediction.objects.create(deployment=deployment, version=version,
                                    prediction_id="new", logged_at=timezone.now(),
                                    features=[1], prediction=0)  # fmt: skip
    quality.roll_up([version.pk], now=old + timedelta(hours=1))
    assert prune_old_records()["logged_predictions"] == 2
    assert list(LoggedPrediction.objects.values_list("prediction_id", flat=True)) == ["new"]
    assert LiveQuality.objects.filter(version=version, labelled=2, correct=1).exists()
    settings.PREDICTION_LOG_RETENTION_DAYS = 0  # 0 keeps them forever
    assert "logged_predictions" not in prune_old_records()


# --- the demo's traffic generator ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_simulated_traffic_drifts_and_sends_feedback_for_logged_predictions(
    live_server, alice, bob, version, stream, tmp_path
):
    import threading

    from django.core.management import call_command
    from django.db import connection

    from mlops_portal.models import ApiToken

    model = version.model
    model.name = "iris-classifier"  # what the command drives by default
    model.save(update_fields=["name"])
    target = deploy.create_target(bob, name="iris-demo", environment="staging")
    port = free_port()
    deployment = go_live(alice, version, target, f"http://127.0.0.1:{port}")
    artifact = tmp_path / "model.joblib"
    artifact.write_bytes(iris_artifact()[0])
    env = {"PREDICTION_SAMPLE_RATE": "1", "PREDICTION_LOG_URL": settings.PREDICTION_LOG_URL,
           "PREDICTION_LOG_STREAM": settings.PREDICTION_LOG_STREAM,
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "deployments.serving.server", "--artifact", str(artifact),
         "--flavor", "sklearn", "--model", "iris", "--version", "1", "--port", str(port),
         "--deployment-id", str(deployment.pk), "--version-id", str(version.pk)],
        cwd=ROOT, env=env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: _answers(f"{deployment.endpoint}/health"), timeout=30)
        options = {"rate": 20, "drift_after": 4, "feedback_delay": 1, "feedback_every": 2,
                   "feedback_share": 1.0, "duration": 14}  # fmt: skip

        def simulate():
            try:
                call_command("simulate_traffic", live_server.url, **options)
            finally:
                connection.close()  # the thread's own connection

        run = threading.Thread(target=simulate)
        run.start()
        while run.is_alive():  # the worker's job, every half second
            predictions.collect_predictions()
            time.sleep(0.5)
        predictions.collect_predictions()
    finally:
        stop_process(server)
    rows = LoggedPrediction.objects.filter(deployment=deployment)
    labelled = rows.filter(label__isnull=False)
    assert rows.count() >= 10 and labelled.count() >= 5
    # After the drift the petals are longer than any iris in the data set (max 6.9 cm).
    assert any(row.features[2] > 6.9 for row in rows)
    assert not ApiToken.objects.filter(user=alice, revoked_at__isnull=True).exists()


def test_simulated_traffic_waits_while_nothing_is_live(db, alice, capsys):
    from django.core.management import call_command

    call_command("simulate_traffic", "http://127.0.0.1:9", duration=1)
    out = capsys.readouterr().out
    assert "nothing of iris-classifier is live yet; waiting." in out
    assert "stopped." in out


@pytest.mark.django_db
def test_without_redis_the_collector_says_so_and_does_not_fail(settings, caplog):
    from monitoring.tasks import collect_predictions

    settings.PREDICTION_LOG_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens
    assert collect_predictions() == {"unavailable": 1}
    assert "The prediction log's Redis does not answer" in caplog.text
