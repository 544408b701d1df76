"""Publishing jobs: the Celery app's settings and the Redis transport that keeps its client."""

import pytest
import redis
from django.conf import settings

from mlops_portal.broker import Transport
from mlops_portal.celery import app as celery_app


def test_celery_reads_the_celery_settings_under_its_own_names():
    assert celery_app.conf.broker_url == settings.CELERY_BROKER_URL
    assert celery_app.conf.task_routes == settings.CELERY_TASK_ROUTES
    assert celery_app.conf.task_default_queue == "default"
    assert celery_app.conf.task_acks_late is True
    assert set(celery_app.conf.beat_schedule) == set(settings.CELERY_BEAT_SCHEDULE)


def test_redis_urls_use_the_transport_that_keeps_its_client():
    with celery_app.connection_for_write() as connection:
        assert connection.transport_cls == "mlops_portal.broker:Transport"
        assert isinstance(connection.transport, Transport)


def test_publishes_share_one_client_until_kombu_replaces_the_pool():
    with celery_app.connection_for_write() as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
            assert first.connection_pool is channel.pool

        channel._disconnect_pools()  # what kombu does after a fork or a lost connection

        with channel.conn_or_acquire() as after:
            assert after is not first
            assert after.connection_pool is channel.pool
            assert after.ping()


@pytest.mark.worker  # its sends reach the broker (a queue of its own, that no worker reads)
@pytest.mark.django_db(transaction=True)
def test_published_jobs_reach_their_queues():
    queue = "tests-broker-publish"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete(queue)
    for version_id in (1, 2, 3):
        celery_app.send_task("deployments.tasks.validate_version_task", (version_id,), queue=queue)
    assert broker.llen(queue) == 3
    broker.delete(queue)
