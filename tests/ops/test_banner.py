"""Engineers see a banner when beat is late or jobs wait in a queue nobody consumes; other
roles do not. Engineers may open /readyz from it with their session."""

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from mlops_portal.models import Heartbeat

BANNER = 'class="alert alert-warning ops-warning"'
LOADS_BANNER = 'hx-get="/ops/banner/" hx-trigger="load, every 60s"'


def beat_ran(seconds_ago):
    Heartbeat.objects.update_or_create(
        name="beat", defaults={"at": timezone.now() - timedelta(seconds=seconds_ago)}
    )


@pytest.mark.django_db
def test_an_engineer_sees_that_beat_is_late_and_a_data_scientist_does_not(client, bob, alice):
    beat_ran(600)
    client.force_login(bob)
    assert LOADS_BANNER in client.get("/").content.decode()
    banner = client.get("/ops/banner/", HTTP_HX_REQUEST="true").content.decode()
    assert BANNER in banner
    assert "Beat last ran 10 min ago" in banner
    client.force_login(alice)
    assert LOADS_BANNER not in client.get("/").content.decode()
    assert client.get("/ops/banner/").status_code == 403


@pytest.mark.django_db
def test_no_banner_when_all_is_well(client, bob):
    beat_ran(3)
    client.force_login(bob)
    assert BANNER not in client.get("/ops/banner/").content.decode()


@pytest.mark.worker  # sends for real; no worker consumes `notifications` here
@pytest.mark.django_db(transaction=True)
def test_jobs_waiting_in_a_queue_nobody_consumes_show_in_the_banner(client, bob, settings):
    from mlops_portal.celery import app

    settings.OPS_QUEUE_WAIT_WARNING_SECONDS = 0
    beat_ran(1)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("notifications")
    app.send_task("mlops_portal.tasks.deliver_notification_task", args=[0], queue="notifications")
    try:
        client.force_login(bob)
        page = client.get("/ops/banner/").content.decode()
    finally:
        broker.delete("notifications")
    assert "1 job(s) in queue &#x27;notifications&#x27; have waited" in page
    assert "is a worker consuming &#x27;notifications&#x27; running?" in page


@pytest.mark.django_db
def test_an_engineer_opens_readyz_with_the_session_a_viewer_may_not(client, bob, carol):
    client.force_login(bob)
    assert client.get("/readyz").status_code in (200, 503)
    assert set(client.get("/readyz").json()["checks"]) >= {"queues", "beat", "outbox"}
    client.force_login(carol)
    assert client.get("/readyz").status_code == 403


def test_the_queue_names_come_from_the_routes():
    from mlops_portal.health import queue_names

    assert queue_names() == ["default", "deploy", "notifications", "probes"]
    assert settings.CELERY_TASK_DEFAULT_QUEUE == "default"
