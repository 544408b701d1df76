"""Publishing jobs: the Celery app's settings, the Redis transport that keeps its client, and
the quick sender that copies Celery's message."""

import base64
import functools
import time
from unittest import mock

import orjson
import pytest
import redis
from celery import Celery
from celery._state import _task_stack
from celery.signals import before_task_publish
from django.conf import settings

from mlops_portal.broker import CELERY_SEND_TASK, QuickSender, Transport
from mlops_portal.celery import app as celery_app
from mlops_portal.core import logs, metrics


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


QUICK_QUEUE = "tests-broker-quick"
# What differs between two sends of one job: ids, the time, and the process's reply address.
PER_SEND = {"id", "root_id", "correlation_id", "delivery_tag", "portal_sent_at", "reply_to"}


def _pushed_messages(broker) -> list[dict]:
    messages = [orjson.loads(raw) for raw in reversed(broker.lrange(QUICK_QUEUE, 0, -1))]
    broker.delete(QUICK_QUEUE)
    return messages


def _without_per_send_values(message: dict) -> dict:
    flat = {**message, "body": orjson.loads(base64.b64decode(message["body"]))}
    for part in ("headers", "properties"):
        flat[part] = {k: v for k, v in message[part].items() if k not in PER_SEND}
    return flat


@pytest.fixture
def celery_sends(monkeypatch):
    """Celery's own send_task, which the autouse `sent_tasks` fixture replaced (the quick
    sender steps aside for a replaced one), and an empty queue of this test's own."""
    monkeypatch.setattr(Celery, "send_task", CELERY_SEND_TASK)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete(QUICK_QUEUE)
    yield broker
    broker.delete(QUICK_QUEUE)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_quick_sender_pushes_what_celery_pushes(celery_sends):
    """The first job goes through Celery; the next ones are its copy with their own args,
    request id and ids: the same message as Celery's send_task makes for them."""
    sender = QuickSender(celery_app)
    task = "deployments.tasks.validate_version_task"
    sender.send(task, [1], QUICK_QUEUE, "request-1")
    assert sender._sent_before, "the first send should have been kept"
    with mock.patch.object(celery_app, "send_task", side_effect=AssertionError("not quick")):
        sender.send(task, [22], QUICK_QUEUE, "request-2")
        sender.send(task, [333], QUICK_QUEUE, "")
    first, quick, quick_without_request = _pushed_messages(celery_sends)

    celery_app.send_task(
        task, args=[22], retry=False, declare=[], argsrepr="[22]", kwargsrepr="{}",
        queue=QUICK_QUEUE, headers={logs.JOB_REQUEST_ID_HEADER: "request-2"},
    )  # fmt: skip
    [by_celery] = _pushed_messages(celery_sends)

    assert _without_per_send_values(quick) == _without_per_send_values(by_celery)
    assert quick["headers"]["id"] == quick["headers"]["root_id"]
    assert quick["headers"]["id"] == quick["properties"]["correlation_id"]
    assert quick["headers"]["id"] != first["headers"]["id"]
    assert quick["properties"]["delivery_tag"] != first["properties"]["delivery_tag"]
    assert abs(quick["headers"][metrics.SENT_AT_HEADER] - time.time()) < 60
    assert orjson.loads(base64.b64decode(quick_without_request["body"]))[0] == [333]
    assert quick_without_request["headers"][logs.JOB_REQUEST_ID_HEADER]  # made up, as Celery's


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_quick_sender_goes_through_celery_when_celery_cannot_be_copied(celery_sends):
    """A replaced send_task (the tests' recorder), another publish signal handler, or a
    broker error (which drops the copy: the next send sets up anew) all go through Celery."""
    sender = QuickSender(celery_app)
    task = "deployments.tasks.validate_version_task"
    sender.send(task, [1], QUICK_QUEUE, "")
    through_celery = mock.Mock(wraps=functools.partial(CELERY_SEND_TASK, celery_app))

    def handler(**kwargs):
        pass

    before_task_publish.connect(handler)
    try:
        with mock.patch.object(celery_app, "send_task", through_celery):
            sender.send(task, [2], QUICK_QUEUE, "")
    finally:
        before_task_publish.disconnect(handler)
    assert through_celery.call_count == 1

    [(_key, _message, _rest, client)] = sender._sent_before.values()
    with mock.patch.object(client, "lpush", side_effect=redis.ConnectionError("down")):
        with pytest.raises(redis.ConnectionError):
            sender.send(task, [3], QUICK_QUEUE, "")
    assert not sender._sent_before
    with mock.patch.object(celery_app, "send_task", through_celery):
        sender.send(task, [4], QUICK_QUEUE, "")
    assert through_celery.call_count == 2

    # Inside a running task Celery names it as the job's parent: no copy stands for that.
    from deployments.tasks import validate_version_task as running

    running.push_request(id="running-job", called_directly=False)
    _task_stack.push(running)
    try:
        with mock.patch.object(celery_app, "send_task", through_celery):
            sender.send(task, [5], QUICK_QUEUE, "")
    finally:
        _task_stack.pop()
        running.pop_request()
    assert through_celery.call_count == 3
    bodies = [orjson.loads(base64.b64decode(m["body"]))[0] for m in _pushed_messages(celery_sends)]
    assert bodies == [[1], [2], [4], [5]]
