"""Shared fixtures: service checks, personas by role, API clients, the Celery worker
subprocess and the browser set-up that every journey test reuses."""

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from mlops_portal import services as account_services
from mlops_portal.roles import Role
from tests.factories import UserFactory

# Sync Playwright runs an event loop in the test thread; Django's ORM must still be usable.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'


def pytest_sessionstart(session):
    """Stop at once, with one line saying how to fix it, when a service is missing."""
    db = settings.DATABASES["default"]
    try:
        psycopg.connect(
            host=db["HOST"],
            port=db["PORT"] or 5432,
            user=db["USER"],
            password=db["PASSWORD"],
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except psycopg.Error as exc:
        pytest.exit(
            f"PostgreSQL at {db['HOST']}:{db['PORT']} is not reachable ({exc.__class__.__name__})."
            f" Start it: {START_POSTGRES}",
            returncode=3,
        )
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3).ping()
    except (redis.RedisError, OSError) as exc:
        pytest.exit(
            f"Redis at {settings.REDIS_URL} is not reachable ({exc.__class__.__name__})."
            f" Start it: {START_REDIS}",
            returncode=3,
        )


@pytest.fixture(autouse=True)
def empty_cache():
    """Throttle counters never carry over from one test to the next."""
    from django.core.cache import cache

    cache.clear()


# --- personas: one user per role, used everywhere --------------------------------------


@pytest.fixture
def alice(db):
    """Alice, a data scientist: registers models and versions."""
    return UserFactory(username="alice", role=Role.DATA_SCIENTIST)


@pytest.fixture
def dave(db):
    """Dave, a second data scientist (for "not your model" cases)."""
    return UserFactory(username="dave", role=Role.DATA_SCIENTIST)


@pytest.fixture
def bob(db):
    """Bob, an MLOps engineer: operates everything."""
    return UserFactory(username="bob", role=Role.MLOPS_ENGINEER)


@pytest.fixture
def carol(db):
    """Carol, a viewer: reads everything, changes nothing."""
    return UserFactory(username="carol", role=Role.VIEWER)


@pytest.fixture
def admin_user(db):
    return UserFactory(username="root", role=None, is_superuser=True, is_staff=True)


@pytest.fixture
def api_client_for():
    """Return an APIClient authenticated with a fresh API token of the given user."""

    made = itertools.count(1)

    def make(user) -> APIClient:
        _, secret = account_services.create_token(user, f"tests-{user.username}-{next(made)}")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
        return client

    return make


# --- the real Celery worker --------------------------------------------------------------


def database_url_for_subprocesses() -> str:
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real `celery worker` subprocess on the real Redis, reading the test database.

    Tests using it must be `django_db(transaction=True)` so the worker sees their rows."""
    from mlops_portal.celery import app

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # no tasks left by older runs
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    node = f"tests-{os.getpid()}@localhost"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url_for_subprocesses(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "mlops_portal",
        "worker",
        "--loglevel",
        "INFO",
        "--queues",
        # Not `notifications`: the `notification_worker` fixture runs that queue in this
        # process, so sent mail lands in Django's locmem outbox.
        "default,deploy,probes",
        "--concurrency",
        "2",
        "--hostname",
        node,
        "--without-gossip",
        "--without-mingle",
    ]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    process.node = node
    process.log_path = log_path
    try:
        wait_for_worker(app, node, process, log_path)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(autouse=True)
def tasks_reach_the_worker_only_when_asked(request, monkeypatch):
    """A test without the `worker` mark sends no task: a live session worker running one
    while the test's tables are flushed deadlocks the flush. Tests that check what is sent
    replace a task's `delay` themselves."""
    if request.node.get_closest_marker("worker"):
        yield
        return
    monkeypatch.setattr("celery.app.task.Task.apply_async", lambda *args, **kwargs: None)
    yield


@pytest.fixture(autouse=True)
def worker_idle_before_flush(request):
    """For `worker` tests: wait until the worker has finished what the test sent, before
    the tables are flushed (this fixture's teardown runs before the database's)."""
    if not request.node.get_closest_marker("worker"):
        yield
        return
    request.getfixturevalue("transactional_db")
    yield
    if "celery_worker_process" not in request.fixturenames:
        return
    from mlops_portal.celery import app

    node = request.getfixturevalue("celery_worker_process").node
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        inspect = app.control.inspect([node], timeout=0.5)
        busy = (inspect.active() or {}).get(node, []) + (inspect.reserved() or {}).get(node, [])
        if not busy:
            return
        time.sleep(0.2)


@pytest.fixture
def notification_worker(transactional_db, settings):
    """A real Celery worker on the real Redis, in a thread of this process, consuming the
    `notifications` queue: what it mails lands in `django.core.mail.outbox`."""
    from celery.contrib.testing.worker import start_worker

    from mlops_portal.celery import app

    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("notifications")  # older runs
    with start_worker(
        app, queues=["notifications"], perform_ping_check=False, shutdown_timeout=20
    ) as worker:
        yield worker


def wait_for_worker(app, node, process, log_path, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The Celery worker exited:\n{log_path.read_text()[-3000:]}")
        if app.control.ping(destination=[node], timeout=0.5):
            return
    raise RuntimeError(f"The Celery worker did not answer in {timeout}s:\n{log_path.read_text()}")


def wait_until(condition, timeout=30.0, interval=0.2):
    """Poll `condition` until it returns a truthy value; return it, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Condition not met within {timeout}s")


# --- model servers ----------------------------------------------------------------------


def stop_model_servers():
    """Stop every model server this test session started (they outlive workers by design).

    Found by their command line (artifacts under this session's temporary folders), not
    through the database, which a transactional test has already emptied by teardown."""
    from deployments.backends.local import SERVER_MODULE, terminate

    ours = (str(settings.MEDIA_ROOT), str(settings.SERVING_DIR))
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
        if SERVER_MODULE in text and any(folder in text for folder in ours):
            terminate(int(cmdline.parent.name))


@pytest.fixture(scope="session", autouse=True)
def no_model_server_outlives_the_session():
    yield
    stop_model_servers()


# --- browser: Debian's Chromium, never a downloaded one --------------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture
def screenshot(page, request):
    """Call at the end of a journey: saves the last page under test-artifacts/."""

    def save(label: str = "") -> Path:
        ARTIFACTS_DIR.mkdir(exist_ok=True)
        path = ARTIFACTS_DIR / f"{request.node.name}{'-' + label if label else ''}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save


@pytest.fixture
def log_in(page, live_server):
    """Log the browser in through the login form as `user` (password 'password')."""

    def as_user(user):
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", "password")
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")

    return as_user
