"""Serving metrics on the deployment and version pages: charts, the before / after panel,
and a number of queries that does not grow with the data."""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deployments import services as deploy
from deployments.models import Deployment
from monitoring.choices import Resolution
from monitoring.models import ServingRollup
from tests.factories import register_iris_version, validated
from tests.monitoring.conftest import go_live


@pytest.fixture
def bob_client(client, bob):
    client.force_login(bob)
    return client


def rollups(deployment, resolution, count, *, start, requests, errors, classes):
    step = timedelta(minutes=1 if resolution == Resolution.MINUTE else 60)
    ServingRollup.objects.bulk_create(
        ServingRollup(
            deployment=deployment, version_id=deployment.version_id, resolution=resolution,
            bucket_start=start + i * step, requests=requests, errors=errors,
            latency_buckets={"0.005": requests // 2, "0.01": requests - requests // 2},
            predictions=classes, scrapes=1,
        )
        for i in range(count)
    )  # fmt: skip


@pytest.fixture
def replaced(alice, bob, iris):
    """v1 live on a target for two days, then v2 replaced it 90 minutes ago."""
    target = deploy.create_target(bob, name="iris-prod", environment="production")
    v1, v2 = (validated(register_iris_version(alice, iris)) for _ in range(2))
    now = timezone.now().replace(second=0, microsecond=0)
    old = go_live(alice, v1, target, "http://127.0.0.1:9/")
    new = go_live(alice, v2, target, "http://127.0.0.1:9/")
    went_live = now - timedelta(minutes=90)
    Deployment.objects.filter(pk=old.pk).update(finished_at=went_live - timedelta(days=2))
    Deployment.objects.filter(pk=new.pk).update(finished_at=went_live)
    new.refresh_from_db()
    # v1's last day: 10 requests a minute, 1 % errors, classes 0 and 1 evenly.
    rollups(old, Resolution.HOUR, 24, start=went_live.replace(minute=0) - timedelta(hours=24),
            requests=600, errors=6, classes={"0": 300, "1": 300})  # fmt: skip
    # v2's first 90 minutes: 20 a minute, 10 % errors, nearly everything class 1.
    rollups(new, Resolution.MINUTE, 90, start=went_live, requests=20, errors=2,
            classes={"0": 1, "1": 19})  # fmt: skip
    rollups(new, Resolution.HOUR, 2, start=went_live.replace(minute=0), requests=600, errors=60,
            classes={"0": 30, "1": 570})  # fmt: skip
    return old, new


def cells(page: str, what: str) -> list[str]:
    """The two value cells of the before / after row `what`."""
    row = page.split(f"<th>{what}</th>", 1)[1].split("</tr>", 1)[0]
    return [cell.split(">", 1)[1] for cell in row.split("</td>")[:2]]


def test_the_deployment_page_charts_serving_metrics_and_compares_before_and_after(
    bob_client, replaced
):
    old, new = replaced

    page = bob_client.get(new.get_absolute_url()).content.decode()

    assert "Serving metrics, last 24 h" in page
    figure = json.loads(page.split('data-figure="', 1)[1].split('"', 1)[0].replace("&quot;", '"'))
    names = {trace["name"] for trace in figure["figure"]["data"]}
    assert {"requests", "error rate (%)", "latency p95 (ms)", "class 0", "class 1"} <= names
    assert f"v{old.version.number}</a>, last day" in page
    assert cells(page, "Requests / min") == ["10.0", "20.0"]
    assert cells(page, "Error rate") == ["1.00 %", "10.00 %"]
    assert cells(page, "Class 1") == ["50.0 %", "95.0 %"]
    assert cells(page, "Latency p50") == ["5.0 ms", "5.0 ms"]


def test_the_version_page_charts_all_its_deployments(bob_client, replaced):
    _, new = replaced

    page = bob_client.get(new.version.get_absolute_url()).content.decode()

    assert "Serving metrics, last 7 days" in page
    assert "class 1" in page


def test_serving_pages_take_the_same_queries_for_a_week_of_data(bob_client, replaced):
    old, new = replaced

    def count(url):
        with CaptureQueriesContext(connection) as queries:
            assert bob_client.get(url).status_code == 200
        return len(queries)

    urls = [new.get_absolute_url(), new.version.get_absolute_url(), old.get_absolute_url()]
    before = [count(url) for url in urls]
    start = new.finished_at - timedelta(days=6)
    rollups(new, Resolution.HOUR, 100, start=start, requests=5, errors=0, classes={"2": 5})
    assert [count(url) for url in urls] == before


def test_a_deployment_without_metrics_says_so(bob_client, alice, bob, iris):
    target = deploy.create_target(bob, name="iris-dev", environment="staging")
    live = go_live(
        alice, validated(register_iris_version(alice, iris)), target, "http://127.0.0.1:9/"
    )

    page = bob_client.get(live.get_absolute_url()).content.decode()

    assert "No serving metrics yet" in page
    assert "Nothing was live on iris-dev before." in page
