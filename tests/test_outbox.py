"""The transactional outbox: a job leaves only with its committed change, the relay sends
what the committing process could not, once, and a Redis outage costs a request nothing."""

import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import httpx
import pytest
import redis
from celery import Celery
from django.db import connection, transaction
from django.utils import timezone

from deployments import services as registry
from deployments.choices import VersionStatus
from deployments.models import ModelVersion
from mlops_portal.core import outbox
from mlops_portal.core import tokens as accounts
from mlops_portal.models import OutboxMessage
from tests.conftest import (
    ROOT,
    Sent,
    celery_worker,
    run_on_sqlite,
    stop_process,
    subprocess_env,
    wait_until,
)
from tests.factories import iris_artifact

VALIDATE = "deployments.tasks.validate_version_task"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pending_rows(count: int) -> list[OutboxMessage]:
    """Jobs whose committing process could not send them: due for the relay now."""
    now = timezone.now()
    return OutboxMessage.objects.bulk_create(
        OutboxMessage(task=VALIDATE, args=[n], available_at=now, relay_at=now) for n in range(count)
    )


# --- enqueueing ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_job_leaves_only_when_its_transaction_commits(sent_tasks):
    with pytest.raises(RuntimeError), transaction.atomic():
        outbox.enqueue(VALIDATE, 1)
        raise RuntimeError("the change fails after asking for its job")
    assert not OutboxMessage.objects.exists()
    assert sent_tasks == []

    with transaction.atomic():
        row = outbox.enqueue(VALIDATE, 2)
        assert sent_tasks == []  # not before the commit
    assert sent_tasks == [Sent(VALIDATE, (2,), "default")]
    row.refresh_from_db()
    assert row.published_at is not None and row.attempts == 0


@pytest.mark.django_db(transaction=True)
def test_a_countdown_and_a_queue_travel_with_the_job(sent_tasks):
    row = outbox.enqueue(VALIDATE, 3, queue="deploy", countdown=60)
    assert sent_tasks == [Sent(VALIDATE, (3,), "deploy")]
    assert timedelta(seconds=59) < row.available_at - row.created_at <= timedelta(seconds=60)


# --- the relay ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_broker_error_leaves_the_job_pending_with_its_error(sent_tasks, settings):
    [row] = pending_rows(1)
    down = Celery("broker-down", broker=f"redis://127.0.0.1:{free_port()}/0", set_as_current=False)
    down.conf.broker_transport = settings.CELERY_BROKER_TRANSPORT  # the portal's transport,
    down.conf.broker_transport_options = settings.CELERY_BROKER_TRANSPORT_OPTIONS  # options
    started = time.monotonic()
    assert outbox.relay_once(app=down) == {"published": 0, "failed": 1}
    assert time.monotonic() - started < 1  # no reconnection loop: a request is not held
    row.refresh_from_db()
    assert row.published_at is None and row.attempts == 1
    assert "Connection refused" in row.last_error or "Error 111" in row.last_error
    assert row.relay_at > timezone.now()  # backoff: not tried again at once
    assert outbox.relay_once(app=down) == {"published": 0, "failed": 0}

    OutboxMessage.objects.update(relay_at=timezone.now())  # the backoff is over
    assert outbox.relay_once() == {"published": 1, "failed": 0}
    assert sent_tasks[-1:] == [Sent(VALIDATE, (0,), "default")]  # the portal's broker, once
    row.refresh_from_db()
    assert row.published_at is not None


@pytest.mark.django_db(transaction=True)
def test_two_relays_send_every_job_exactly_once(sent_tasks):
    pending_rows(200)
    start = threading.Barrier(2)

    def relay():
        try:
            start.wait()
            while outbox.relay_once(limit=7)["published"]:
                pass
        finally:
            connection.close()

    threads = [threading.Thread(target=relay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(sent_tasks.args_of(VALIDATE)) == [(n,) for n in range(200)]
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_a_relay_skips_the_jobs_another_relay_holds_instead_of_waiting():
    rows = pending_rows(4)
    held, release, first = threading.Event(), threading.Event(), []

    def first_relay():
        try:
            with transaction.atomic():
                first.extend(outbox.claim(2))
                held.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=first_relay)
    thread.start()
    assert held.wait(10)
    started = time.monotonic()
    second = outbox.claim(10)
    waited = time.monotonic() - started
    release.set()
    thread.join()
    assert waited < 2  # FOR UPDATE SKIP LOCKED: no wait for the other relay's locks
    assert sorted(row.pk for row in first + second) == sorted(row.pk for row in rows)


@pytest.mark.django_db
def test_published_jobs_are_pruned_after_the_retention(settings):
    old, recent, waiting = pending_rows(3)
    now = timezone.now()
    OutboxMessage.objects.filter(pk=old.pk).update(published_at=now - timedelta(hours=25))
    OutboxMessage.objects.filter(pk=recent.pk).update(published_at=now - timedelta(hours=23))
    OutboxMessage.objects.filter(pk=waiting.pk).update(created_at=now - timedelta(days=3))
    settings.OUTBOX_RETENTION_HOURS = 24
    assert outbox.prune() == 1
    assert set(OutboxMessage.objects.values_list("pk", flat=True)) == {recent.pk, waiting.pk}


def test_the_relay_claims_on_sqlite_too(tmp_path):
    """`make run` uses SQLite: the relay's conditional UPDATE, two relays at once, there."""
    script = """
import threading
import django
django.setup()
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from mlops_portal.core import outbox
from mlops_portal.models import OutboxMessage

call_command("migrate", "mlops_portal", verbosity=0)
now = timezone.now()
OutboxMessage.objects.bulk_create(
    OutboxMessage(task="t", args=[n], available_at=now, relay_at=now) for n in range(60)
)
claimed = []

def relay():
    while rows := outbox.claim(7):
        claimed.extend(row.args[0] for row in rows)
    connection.close()

threads = [threading.Thread(target=relay) for _ in range(2)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(sorted(claimed) == list(range(60)), len(claimed))
"""
    assert run_on_sqlite(script, tmp_path).split() == ["True", "60"]


# --- a Redis outage, with real processes ------------------------------------------------


class PrivateRedis:
    """A redis-server of this test's own on a free port, stopped and started at will (by
    its pid; the shared Redis is never touched)."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(lambda: self.answers(), timeout=10, interval=0.05)

    def stop(self):
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def answers(self) -> bool:
        try:
            return redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
        except redis.RedisError:
            return False


@pytest.fixture
def private_redis():
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


def start_portal_process(command, broker_url, log_path):
    env = {**subprocess_env(), "CELERY_BROKER_URL": broker_url}
    with open(log_path, "w") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def outage_stack(private_redis, tmp_path):
    """gunicorn, a Celery worker and the outbox relay, all on the private Redis."""
    port = free_port()
    web = start_portal_process(
        [sys.executable, "-m", "gunicorn", "mlops_portal.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", "1"],
        private_redis.url, tmp_path / "web.log",
    )  # fmt: skip
    relay = start_portal_process(
        [sys.executable, "manage.py", "relay_outbox"], private_redis.url, tmp_path / "relay.log"
    )
    try:
        with celery_worker(
            private_redis.url, tmp_path / "worker.log", node=f"outage-{port}@localhost"
        ):
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: answers(url), timeout=30)
            yield url
    finally:
        for process in (relay, web):
            stop_process(process)
        assert "Outbox relay: stopped." in (tmp_path / "relay.log").read_text()  # on SIGTERM


def answers(url) -> bool:
    try:
        return httpx.get(f"{url}/login/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_registration_during_a_redis_outage_answers_201_and_is_validated_once_redis_is_back(
    outage_stack, private_redis, alice
):
    registry.create_model(alice, name="churn")
    _, secret = accounts.create_token(alice, "ci")
    private_redis.stop()

    response = httpx.post(
        f"{outage_stack}/api/v1/models/churn/versions/",
        headers={"Authorization": f"Token {secret}"},
        files={"artifact": ("model.joblib", iris_artifact()[0])},
        data={"sample_input": "[[5.1, 3.5, 1.4, 0.2]]"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    version = ModelVersion.objects.get(model__name="churn", number=response.json()["version"])
    job = OutboxMessage.objects.get(task=VALIDATE, args=[version.pk])
    assert job.published_at is None and job.attempts >= 1  # the fast path failed, told
    assert job.last_error
    time.sleep(2)  # the relay keeps trying while Redis is down
    job.refresh_from_db()
    assert job.published_at is None
    assert ModelVersion.objects.get(pk=version.pk).status == VersionStatus.REGISTERED

    private_redis.start()
    back = time.monotonic()
    wait_until(
        lambda: ModelVersion.objects.get(pk=version.pk).status == VersionStatus.READY, timeout=30
    )
    assert time.monotonic() - back < 30
    job.refresh_from_db()
    assert job.published_at is not None
