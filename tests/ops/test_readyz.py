"""/readyz: each component with a status; red when the worker or beat stops, green again
when they are back. A real stack on a private Redis: gunicorn, a worker, beat."""

import subprocess
import sys

import httpx
import pytest
from django.db.migrations.recorder import MigrationRecorder

from tests.conftest import (
    ROOT,
    control_app,
    start_celery_worker,
    stop_process,
    subprocess_env,
    wait_for_worker,
    wait_until,
)
from tests.test_outbox import PrivateRedis, free_port

TOKEN = "readyz-token-for-tests"
ALL_QUEUES = "default,deploy,notifications,probes"


def readyz(url) -> tuple[int, dict]:
    response = httpx.get(f"{url}/readyz", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    return response.status_code, response.json()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_readyz_is_red_while_the_worker_or_beat_is_stopped_and_green_when_back(tmp_path):
    broker = PrivateRedis()
    broker.start()
    env = {**subprocess_env(), "CELERY_BROKER_URL": broker.url, "METRICS_TOKEN": TOKEN}
    env["READYZ_BEAT_MAX_AGE_SECONDS"] = "8"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    processes = []

    def start(name, command):
        with open(tmp_path / f"{name}.log", "w") as out:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        processes.append(process)
        return process

    def start_worker():
        worker = start_celery_worker(
            f"ready-{port}@localhost", ALL_QUEUES, tmp_path / "worker.log",
            env={"CELERY_BROKER_URL": broker.url},
        )  # fmt: skip
        processes.append(worker)
        wait_for_worker(control_app(broker.url), worker.node, worker, worker.log_path)
        return worker

    try:
        start("web", [
            sys.executable, "-m", "gunicorn", "mlops_portal.wsgi", "--bind", f"127.0.0.1:{port}",
            "--workers", "1", "--no-control-socket",
        ])  # fmt: skip
        beat = start("beat", [
            sys.executable, "-m", "celery", "-A", "mlops_portal", "beat", "--loglevel", "INFO",
            "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler", "--pidfile=",
        ])  # fmt: skip
        worker = start_worker()

        status, body = wait_until(lambda: green(url), timeout=60)
        checks = body["checks"]
        assert {name: check["status"] for name, check in checks.items()} == {
            "database": "ok", "broker": "ok", "migrations": "ok", "queues": "ok",
            "beat": "ok", "outbox": "ok",
        }  # fmt: skip
        assert checks["queues"]["consumers"]["deploy"] == [worker.node]
        assert checks["beat"]["age_seconds"] < 8
        assert checks["migrations"]["unapplied"] == []

        stop_process(worker)
        status, body = readyz(url)
        assert status == 503 and body["status"] == "failing"
        assert body["checks"]["queues"]["status"] == "failing"
        assert body["checks"]["queues"]["without_consumer"] == ALL_QUEUES.split(",")
        assert body["checks"]["beat"]["status"] == "ok"

        start_worker()
        wait_until(lambda: green(url), timeout=30)

        stop_process(beat)
        status, body = wait_until(lambda: red(url), timeout=30)
        assert body["checks"]["beat"]["status"] == "failing"
        assert body["checks"]["beat"]["age_seconds"] >= 8
        assert body["checks"]["queues"]["status"] == "ok"
    finally:
        for process in reversed(processes):
            stop_process(process)
        broker.stop()


def green(url):
    status, body = readyz(url)
    return (status, body) if status == 200 else None


def red(url):
    status, body = readyz(url)
    return (status, body) if status == 503 else None


@pytest.mark.django_db
def test_an_unapplied_migration_is_named(client, settings):
    settings.METRICS_TOKEN = TOKEN
    MigrationRecorder.Migration.objects.filter(app="mlops_portal", name="0008_heartbeat").delete()
    response = client.get("/readyz", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 503
    migrations = response.json()["checks"]["migrations"]
    assert migrations == {"status": "failing", "unapplied": ["mlops_portal.0008_heartbeat"],
                          "ms": migrations["ms"]}  # fmt: skip


@pytest.mark.django_db
def test_readyz_needs_the_scrapers_token(client, settings):
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/readyz").status_code == 401
    assert client.get("/readyz", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    assert client.get("/healthz").status_code in (200, 503)  # liveness stays open
