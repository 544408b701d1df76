"""The serving-metrics scrape: a real model server process and local stand-ins (malformed,
slow, dead) on 127.0.0.1, real PostgreSQL; the beat job's function called directly."""

import http.server
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from deployments import services as deploy
from deployments.serving.metrics import Metrics
from monitoring.choices import Resolution
from monitoring.models import ServingRollup, ServingScrapeState
from monitoring.scraping import MetricsError, ScrapeOutcome, read_counters
from monitoring.services import serving
from tests.factories import iris_artifact, register_iris_version, validated
from tests.monitoring.conftest import go_live
from tests.serving.test_model_server import start_server, stop_server, write_iris

NOW = datetime(2026, 12, 1, 10, 30, 15, tzinfo=UTC)


class MetricsStandIn(http.server.ThreadingHTTPServer):
    """Serves `text` at /metrics after `delay` seconds: what a model server would, or not."""

    daemon_threads = True

    def __init__(self, text: str = ""):
        super().__init__(("127.0.0.1", 0), MetricsHandler)
        self.text, self.delay = text, 0.0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_port}"

    def stop(self):
        self.shutdown()
        self.server_close()


class MetricsHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(self.server.delay)
        body = self.server.text.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def metrics_text(requests=0, errors=0, predictions=(), metrics=None) -> str:
    """What a model server says after `requests` more predictions (`errors` of them 500s);
    `metrics` is the server's (a fresh one by default, as after a restart)."""
    metrics = metrics or Metrics("iris", 1)
    for i in range(requests):
        metrics.observe("/predict", 500 if i < errors else 200, 0.004)
    metrics.count_predictions(list(predictions))
    return metrics.render().decode()


@pytest.fixture
def target(bob):
    return deploy.create_target(bob, name="iris-prod", environment="production")


@pytest.fixture
def version(alice, iris):
    return validated(register_iris_version(alice, iris))


@pytest.fixture
def stand_ins():
    servers = []

    def make(text=""):
        servers.append(MetricsStandIn(text))
        return servers[-1]

    yield make
    for server in servers:
        try:
            server.stop()
        except OSError:
            pass


def minute_rollup(deployment, at=NOW):
    return ServingRollup.objects.get(
        deployment=deployment, resolution=Resolution.MINUTE,
        bucket_start=at.replace(second=0, microsecond=0),
    )  # fmt: skip


def test_a_live_model_server_is_scraped_into_minute_and_hour_rollups(
    alice, version, target, tmp_path
):
    process, url = start_server(write_iris(tmp_path), tmp_path / "server.log")
    try:
        live = go_live(alice, version, target, url)
        sample = iris_artifact()[3]
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(5):
                predictions = client.post("/predict", json={"instances": sample}).json()
            for _ in range(2):
                assert client.post("/predict", json={"rows": sample}).status_code == 400

            assert serving.scrape_live_deployments(NOW) == {"scraped": 1, "failed": 0}
            client.post("/predict", json={"instances": sample})
            serving.scrape_live_deployments(NOW + timedelta(seconds=30))
    finally:
        stop_server(process)

    minute, hour = (
        minute_rollup(live),
        ServingRollup.objects.get(deployment=live, resolution=Resolution.HOUR),
    )
    for rollup in (minute, hour):
        assert (rollup.requests, rollup.client_errors, rollup.errors) == (8, 2, 0)
        assert rollup.scrapes == 2 and rollup.scrape_errors == 0
        assert rollup.version_id == version.pk
        expected = {}
        for label in predictions["predictions"]:
            expected[str(label)] = expected.get(str(label), 0) + 6
        assert rollup.predictions == expected
        assert 0 < rollup.latency_p50 <= rollup.latency_p95 <= rollup.latency_p99
    assert hour.bucket_start == NOW.replace(minute=0, second=0, microsecond=0)
    assert ServingScrapeState.objects.get(deployment=live).last_ok is True


def test_counters_become_deltas_and_a_restart_counts_from_zero(alice, version, target):
    live = go_live(alice, version, target, "http://127.0.0.1:9/")
    versions = {live.pk: version.pk}

    def scrape(text, at):
        serving.record_scrapes([ScrapeOutcome(live.pk, at, text, "")], versions, at)

    server = Metrics("iris", 1)
    scrape(metrics_text(10, 1, [0, 1, 1], server), NOW)
    scrape(metrics_text(15, 3, [2], server), NOW + timedelta(minutes=1))
    # The server restarted: its counters start again from zero.
    scrape(metrics_text(requests=3, predictions=[2]), NOW + timedelta(minutes=2))

    minutes = ServingRollup.objects.filter(deployment=live, resolution=Resolution.MINUTE)
    assert [(r.requests, r.errors, r.predictions) for r in minutes] == [
        (10, 1, {"0": 1, "1": 2}),
        (15, 3, {"2": 1}),
        (3, 0, {"2": 1}),
    ]
    hour = ServingRollup.objects.get(deployment=live, resolution=Resolution.HOUR)
    assert (hour.requests, hour.errors) == (28, 4)
    assert hour.predictions == {"0": 1, "1": 2, "2": 2}


@pytest.mark.django_db(transaction=True)
def test_malformed_slow_and_dead_servers_are_recorded_and_no_rollup_is_lost(
    alice, iris, bob, stand_ins, settings
):
    settings.SERVING_SCRAPE_TIMEOUT_SECONDS = 0.5
    version = validated(register_iris_version(alice, iris))
    good, malformed, slow, dead = (stand_ins(metrics_text(requests=4)) for _ in range(4))
    malformed.text = "model_server_requests_total{path= 12 oops\n"
    slow.delay = 2
    dead_url = dead.url
    dead.stop()
    urls = {"good": good.url, "malformed": malformed.url, "slow": slow.url, "dead": dead_url}
    deployments = {
        name: go_live(alice, version, deploy.create_target(bob, name=name, environment="staging"),
                      url)
        for name, url in urls.items()
    }  # fmt: skip

    started = time.perf_counter()
    assert serving.scrape_live_deployments(NOW) == {"scraped": 1, "failed": 3}
    assert time.perf_counter() - started < 1.9  # the slow one cost its timeout, not its delay

    errors = dict(ServingScrapeState.objects.values_list("deployment__target__name", "last_error"))
    assert errors["good"] == ""
    assert "malformed metrics text" in errors["malformed"]
    assert errors["slow"] == "timed out after 0.5 s"
    assert errors["dead"] == "connection refused"
    assert minute_rollup(deployments["good"]).requests == 4
    for name in ("malformed", "slow", "dead"):
        rollup = minute_rollup(deployments[name])
        assert (rollup.scrapes, rollup.scrape_errors, rollup.requests) == (1, 1, 0)

    # The slow server answers in time again: the traffic it served meanwhile is counted.
    slow.delay, slow.text = 0, metrics_text(requests=9)
    serving.scrape_live_deployments(NOW + timedelta(minutes=1))
    assert minute_rollup(deployments["slow"], NOW + timedelta(minutes=1)).requests == 9
    assert ServingScrapeState.objects.get(deployment=deployments["slow"]).last_ok is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model_server_requests_total{path= 12 oops\n", "malformed metrics text"),
        ("just some text\n", "malformed metrics text"),
        ("# TYPE foo counter\nfoo_total 3\n", "no model_server_request_duration_seconds"),
        ('model_server_requests_total{path="/predict",status="200"} NaN\n', "has the value nan"),
    ],
    ids=["broken-labels", "prose", "not-a-model-server", "nan"],
)
def test_read_counters_names_what_is_wrong(text, message):
    with pytest.raises(MetricsError, match=message):
        read_counters(text)


def test_quantiles_interpolate_inside_the_bucket_like_prometheus():
    # 100 observations: 50 under 10 ms, 45 between 10 and 100 ms, 5 between 0.1 and 1 s.
    buckets = {"0.01": 50, "0.1": 45, "1.0": 5, "+Inf": 0}

    p50, p95, p99 = serving.quantiles(buckets)

    assert p50 == 10.0
    assert p95 == 100.0
    assert p99 == pytest.approx(100 + 900 * 4 / 5)
    assert serving.quantiles({}) == (None, None, None)
    assert serving.quantiles({"0.01": 1, "+Inf": 3})[1] == 10.0  # past the last bound


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_beat_task_on_a_real_worker_rolls_up_a_real_model_server(
    celery_worker_process, alice, iris, bob, tmp_path
):
    from monitoring.tasks import scrape_serving_metrics
    from tests.conftest import wait_until

    version = validated(register_iris_version(alice, iris))
    target = deploy.create_target(bob, name="iris-live", environment="staging")
    process, url = start_server(write_iris(tmp_path), tmp_path / "server.log")
    try:
        live = go_live(alice, version, target, url)
        for _ in range(3):
            httpx.post(f"{url}/predict", json={"instances": iris_artifact()[3]}, timeout=10)

        scrape_serving_metrics.delay()

        hour = wait_until(
            lambda: ServingRollup.objects.filter(
                deployment=live, resolution=Resolution.HOUR, requests=3
            ).first(),
            timeout=30,
        )
    finally:
        stop_server(process)
    assert hour.scrape_errors == 0 and sum(hour.predictions.values()) == 3 * len(iris_artifact()[3])
