"""`/metrics`: the portal's own figures in Prometheus format, for a scraper with the token."""

import pytest
import redis
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from deployments.choices import DeploymentState as State
from deployments.models import Deployment
from mlops_portal.core import metrics
from monitoring.models import HealthCheck
from monitoring.services import incidents
from monitoring.tasks import dispatch_probes
from tests.conftest import wait_until

TOKEN = "scrape-secret-0123456789"
FAMILIES = {
    "portal_http_requests": "counter",
    "portal_http_request_duration_seconds": "histogram",
    "portal_db_queries": "counter",
    "portal_celery_jobs": "counter",
    "portal_celery_job_duration_seconds": "histogram",
    "portal_celery_queue_length": "gauge",
    "portal_celery_queue_oldest_job_age_seconds": "gauge",
    "portal_probes": "counter",
    "portal_probes_due": "gauge",
    "portal_probe_lag_seconds": "gauge",
    "portal_deployments": "gauge",
    "portal_incidents_open": "gauge",
    "portal_outbox_pending": "gauge",
    "portal_outbox_oldest_pending_age_seconds": "gauge",
}


@pytest.fixture
def scrape(client, settings):
    settings.METRICS_TOKEN = TOKEN

    def get() -> dict:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/plain")
        return {f.name: f for f in text_string_to_metric_families(response.content.decode())}

    return get


def samples(family, suffix="", **labels) -> list[float]:
    name = family.name + suffix
    return [
        s.value
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def counted(before, after, family, suffix, **labels) -> float:
    """How much a counter grew between two scrapes."""
    old = samples(before[family], suffix, **labels) if family in before else []
    return samples(after[family], suffix, **labels)[0] - (old[0] if old else 0.0)


@pytest.fixture
def no_job_counts():
    """Job and probe counts live in Redis across runs: start from none."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(metrics.JOBS_KEY, metrics.JOB_SECONDS_KEY, metrics.JOB_BUCKETS_KEY)
    client.delete(metrics.PROBES_KEY)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_scrape_after_a_real_deploy_shows_every_family(
    celery_worker_process, no_job_counts, scrape, api_client_for, alice, bob, ready_version,
    staging,
):  # fmt: skip
    before = scrape()  # in-process counters keep what earlier tests counted
    response = api_client_for(alice).post(
        "/api/v1/deployments/",
        {"model": "iris", "version": 1, "target": "iris-staging", "reason": "Try it"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    deployment_id = response.json()["id"]
    done = wait_until(
        lambda: Deployment.objects.filter(pk=deployment_id, state=State.SUCCEEDED).first(),
        timeout=60,
    )
    incidents.open_incident(bob, title="iris answers slowly", severity="sev2", target=staging)
    # The deploy made the target's live-endpoint check; the probe engine probes it.
    assert HealthCheck.objects.filter(target=staging).exists()
    dispatch_probes.apply_async()
    wait_until(lambda: int(redis.Redis.from_url(settings.REDIS_URL).get(metrics.PROBES_KEY) or 0))

    families = scrape()

    for name, kind in FAMILIES.items():
        assert name in families, f"{name} missing"
        assert families[name].type == kind, name
    assert samples(families["portal_deployments"], state="succeeded") == [1.0]
    assert samples(families["portal_deployments"], state="failed") == [0.0]
    assert samples(families["portal_incidents_open"], severity="sev2") == [1.0]
    assert samples(families["portal_incidents_open"], severity="sev1") == [0.0]
    created = {"view": "api:deployment-list", "method": "POST", "status": "201"}
    assert counted(before, families, "portal_http_requests", "_total", **created) == 1
    queries = counted(before, families, "portal_db_queries", "_total", view="api:deployment-list")
    assert queries > 3
    timed = counted(
        before, families, "portal_http_request_duration_seconds", "_count",
        view="api:deployment-list",
    )  # fmt: skip
    assert timed == 1
    deploys = samples(
        families["portal_celery_jobs"], "_total",
        task="deployments.tasks.run_deployment_task", outcome="success",
    )  # fmt: skip
    assert deploys == [1.0]
    duration = families["portal_celery_job_duration_seconds"]
    run = "deployments.tasks.run_deployment_task"
    assert samples(duration, "_count", task=run) == [1.0]
    assert 0 < samples(duration, "_sum", task=run)[0] < 60
    assert samples(families["portal_probes"], "_total") == [1.0]
    assert set(samples(families["portal_probes_due"])) == {0.0}
    for queue in ("default", "deploy", "probes", "notifications"):
        assert len(samples(families["portal_celery_queue_length"], queue=queue)) == 1
    assert samples(families["portal_outbox_pending"]) == [0.0]
    assert done.endpoint


@pytest.mark.worker  # sends for real (no worker consumes `notifications` here)
@pytest.mark.django_db(transaction=True)
def test_queue_depth_and_the_oldest_job_come_from_the_broker(scrape):
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete("notifications")
    from mlops_portal.celery import app

    app.send_task("mlops_portal.tasks.deliver_notification_task", args=[0], queue="notifications")
    app.send_task("mlops_portal.tasks.deliver_notification_task", args=[0], queue="notifications")
    try:
        families = scrape()
    finally:
        client.delete("notifications")
    assert samples(families["portal_celery_queue_length"], queue="notifications") == [2.0]
    oldest = families["portal_celery_queue_oldest_job_age_seconds"]
    (waited,) = samples(oldest, queue="notifications")
    assert 0 < waited < 10


@pytest.mark.django_db
def test_probe_lag_and_outbox_backlog_are_read_at_scrape_time(scrape, bob):
    from datetime import timedelta

    from django.utils import timezone

    from mlops_portal.core import outbox

    late = timezone.now() - timedelta(seconds=42)
    HealthCheck.objects.create(name="late", url="http://127.0.0.1:9/health", next_due_at=late)
    outbox.enqueue("mlops_portal.tasks.sweep_deliveries_task")  # never committed: pending
    families = scrape()
    (lag,) = samples(families["portal_probe_lag_seconds"])
    assert 42 <= lag < 60
    assert samples(families["portal_probes_due"]) == [1.0]
    assert samples(families["portal_outbox_pending"]) == [1.0]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("token", "networks", "header", "status"),
    [
        (TOKEN, [], "", 401),
        (TOKEN, [], "Bearer wrong", 401),
        (TOKEN, [], f"Token {TOKEN}", 401),
        ("", [], "", 403),
        ("", [], "Bearer ", 403),
        ("", ["10.0.0.0/8"], "", 403),
        ("", ["127.0.0.0/8"], "", 200),
        (TOKEN, [], f"Bearer {TOKEN}", 200),
    ],
)
def test_only_a_scraper_with_the_token_or_from_an_allowed_network_reads_it(
    client, settings, token, networks, header, status
):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = token, networks
    response = client.get("/metrics", HTTP_AUTHORIZATION=header, REMOTE_ADDR="127.0.0.1")
    assert response.status_code == status
    if status == 200:
        assert b"portal_deployments" in response.content
    else:
        assert b"portal_" not in response.content


@pytest.mark.django_db
def test_without_redis_job_counts_stay_in_the_processes(scrape, settings):
    """`make run`'s filesystem broker: no Redis, the counts are prometheus-client instruments
    (shared between processes through PROMETHEUS_MULTIPROC_DIR there)."""
    settings.CELERY_BROKER_URL = "filesystem://"
    metrics.metrics_redis.cache_clear()
    try:
        metrics.record_job("tests.no_redis", "failure", 0.3)
        metrics.record_probes(4)
        families = scrape()
    finally:
        metrics.metrics_redis.cache_clear()
    jobs = samples(
        families["portal_celery_jobs"], "_total", task="tests.no_redis", outcome="failure"
    )
    assert jobs == [1.0]
    assert samples(families["portal_probes"], "_total")[0] >= 4
    assert samples(families["portal_celery_queue_length"]) == []  # no broker lists to read
