"""Shared fixtures: service checks, personas by role, API clients, the Celery worker
subprocess and the browser set-up that every journey test reuses."""

import contextlib
import functools
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import httpx
import psycopg
import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from mlops_portal.core import tokens as account_services
from mlops_portal.core.roles import Role
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
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.exit(
            f"The tests run on PostgreSQL; DATABASE_URL names {db['ENGINE']}. Leave it unset"
            " for postgres://postgres@127.0.0.1:5432/test.",
            returncode=3,
        )
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
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # no tasks left by older runs
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    with celery_worker(settings.CELERY_BROKER_URL, log_path) as process:
        yield process


@contextlib.contextmanager
def celery_worker(broker_url, log_path, node=None):
    """Run a real `celery worker` subprocess on `broker_url` and the test database until the
    block ends; yield its Popen (with `.node` and `.log_path`)."""
    node = node or f"tests-{os.getpid()}@localhost"
    process = start_celery_worker(
        node,
        # Not `notifications`: the `notification_worker` fixture runs that queue in this
        # process, so sent mail lands in Django's locmem outbox.
        "default,deploy,probes",
        log_path,
        concurrency=2,
        env={"CELERY_BROKER_URL": broker_url},
    )
    try:
        wait_for_worker(control_app(broker_url), node, process, log_path)
        yield process
    finally:
        stop_process(process)


def start_celery_worker(
    node, queues, log_path, *, concurrency=1, env=None, own_group=False
) -> subprocess.Popen:
    """Start a `celery worker` subprocess for `queues` on the test database, logging to
    `log_path`; return its Popen with `.node` and `.log_path`. With `own_group`, it leads its
    own process group, so a test can SIGKILL it with its pool children at once."""
    command = [
        *(sys.executable, "-m", "celery", "-A", "mlops_portal", "worker", "--loglevel", "INFO"),
        *("--queues", queues, "--concurrency", str(concurrency), "--hostname", node),
        *("--without-gossip", "--without-mingle"),
    ]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**subprocess_env(), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=own_group,
        )
    process.node, process.log_path = node, log_path
    return process


def run_on_sqlite(script: str, folder: Path) -> str:
    """Run the Python `script` in a process of its own with the portal on a SQLite file in
    `folder`, as `make run` has it; its standard output (the test fails with its errors)."""
    env = {**subprocess_env(), "DATABASE_URL": f"sqlite:///{folder / 'portal.sqlite3'}"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def subprocess_env() -> dict:
    """The environment for a portal process (worker, relay, web) on the test database. Its
    links to the portal (signed artifact links a Ray replica downloads) point at the
    session's gunicorn (`portal_gunicorn`), on a port chosen for it up front."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url_for_subprocesses(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PORTAL_BASE_URL": f"http://127.0.0.1:{session_portal_port()}",
    }


@functools.cache
def session_portal_port() -> int:
    return free_port()


def stop_process(process, timeout=20) -> None:
    """Terminate a subprocess we started (by its pid), killing it if it lingers."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class SentTasks(list):
    """The tasks the code under test sent to Celery, in order, as `Sent` tuples."""

    def args_of(self, task) -> list[tuple]:
        """The arguments of each send of `task` (a task or its name)."""
        name = getattr(task, "name", task)
        return [sent.args for sent in self if sent.task == name]


class Sent(NamedTuple):
    task: str
    args: tuple
    queue: str


@pytest.fixture(autouse=True)
def sent_tasks(request, monkeypatch) -> SentTasks:
    """Record every task sent to Celery (name, args, queue). Without the `worker` mark
    nothing reaches the shared broker: a live session worker running a job while the test's
    tables are flushed deadlocks the flush. With it, sends are recorded and go out, as do
    sends of a test's own Celery app (its own broker).

    Jobs go through the outbox (`mlops_portal.core.outbox`), which sends them when their
    transaction commits; a test inside the usual rolled-back transaction sees them as
    `OutboxMessage` rows (`outbox_jobs`), or here under `django_capture_on_commit_callbacks(
    execute=True)`."""
    from celery import Celery

    from mlops_portal.celery import app as portal_app

    recorded = SentTasks()
    send = Celery.send_task
    sends = request.node.get_closest_marker("worker") is not None

    def record(app, name, args=None, kwargs=None, **options):
        routes = app.conf.task_routes or {}
        route = routes.get(name, {}).get("queue", app.conf.task_default_queue)
        recorded.append(Sent(name, tuple(args or ()), options.get("queue") or route))
        if sends or app is not portal_app:
            return send(app, name, args, kwargs, **options)
        return None

    monkeypatch.setattr(Celery, "send_task", record)
    return recorded


@pytest.fixture
def outbox_jobs():
    """The jobs written to the outbox so far, as (task name, args) pairs in order: what the
    code under test asked to run, sent or not."""
    from mlops_portal.models import OutboxMessage

    def jobs(task=None) -> list[tuple]:
        rows = OutboxMessage.objects.order_by("pk")
        if task is not None:
            rows = rows.filter(task=getattr(task, "name", task))
        return [(row.task, tuple(row.args)) for row in rows]

    return jobs


@pytest.fixture(autouse=True)
def worker_idle_before_flush(request):
    """For `worker` tests: wait until the worker has finished what the test sent, before
    the tables are flushed (this fixture's teardown runs before the database's); fail,
    naming what still runs, when it stays busy."""
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
    busy = []
    while time.monotonic() < deadline:
        inspect = app.control.inspect([node], timeout=0.5)
        busy = (inspect.active() or {}).get(node, []) + (inspect.reserved() or {}).get(node, [])
        if not busy:
            return
        time.sleep(0.2)
    running = ", ".join(f"{task['name']}{tuple(task['args'])}" for task in busy)
    raise AssertionError(f"The worker was still busy 20 s after the test: {running}")


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


@pytest.fixture(scope="session")
def portal_gunicorn(celery_worker_process, tmp_path_factory):
    """The portal served by its real gunicorn (2 workers) on a free 127.0.0.1 port, the test
    database and Redis, beside the session's Celery worker; one for the whole session, with
    `.url`. Tests using it are `worker` and `django_db(transaction=True)` (tests/live.py)."""
    from tests.live import start_portal

    log_path = tmp_path_factory.mktemp("gunicorn") / "web.log"
    with start_portal(log_path, port=session_portal_port()) as portal:
        yield portal


def control_app(broker_url):
    """A Celery app to ping or inspect workers on `broker_url`: the portal's own, or a bare
    one for a test's own broker."""
    from celery import Celery

    from mlops_portal.celery import app

    if broker_url == settings.CELERY_BROKER_URL:
        return app
    return Celery("tests-control", broker=broker_url, set_as_current=False)


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


def running_model_servers(module=None) -> set[int]:
    """The pids of the model servers (or, with `module`, the canary proxies) this test
    session started that still run.

    Found by their command line (artifacts under this session's temporary folders), not
    through the database, which a transactional test has already emptied by teardown."""
    from deployments.backends.local import SERVER_MODULE

    module = module or SERVER_MODULE
    ours = (str(settings.MEDIA_ROOT), str(settings.SERVING_DIR))
    pids = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
        if module in text and any(folder in text for folder in ours):
            pids.add(int(cmdline.parent.name))
    return pids


def stop_model_servers():
    """Stop every model server this test session started (they outlive workers by design)."""
    from deployments.backends.local import PROXY_MODULE, terminate

    for pid in running_model_servers():
        terminate(pid)
    for pid in running_model_servers(PROXY_MODULE):
        terminate(pid, module=PROXY_MODULE)


@pytest.fixture(scope="session", autouse=True)
def no_model_server_outlives_the_session():
    yield
    stop_model_servers()


# --- artifact stores: a local S3 and a real MLflow tracking server ----------------------


class S3Server(NamedTuple):
    """A running S3-compatible server (moto) and the settings that reach it."""

    endpoint_url: str
    region: str = "us-east-1"
    access_key_id: str = "portal-tests"
    secret_access_key: str = "portal-tests-secret"

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def upload_folder(self, folder: Path, bucket: str, prefix: str) -> str:
        """Upload every file of `folder` under s3://bucket/prefix/; return that URI."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            client.upload_file(str(file), bucket, f"{prefix}/{file.relative_to(folder)}")
        return f"s3://{bucket}/{prefix}"

    def settings(self) -> dict:
        """The portal's ARTIFACT_S3_* settings for this server."""
        return {
            "ARTIFACT_S3_ENDPOINT_URL": self.endpoint_url,
            "ARTIFACT_S3_REGION": self.region,
            "ARTIFACT_S3_ACCESS_KEY_ID": self.access_key_id,
            "ARTIFACT_S3_SECRET_ACCESS_KEY": self.secret_access_key,
        }


@pytest.fixture(scope="session")
def s3_server():
    """A local S3-compatible server (moto in server mode) on a free 127.0.0.1 port, for the
    session; its buckets live in its memory and vanish with it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


@contextlib.contextmanager
def mlflow_pointed_at(tracking_uri: str, registry_uri: str | None = None):
    """The in-process mlflow client's tracking (and registry) URI set for a block, then put
    back as they were: mlflow keeps them in module globals that outlive a test, so a URI
    left behind (or reset to "") sends later tests to a local ./mlruns file store."""
    import mlflow

    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri or tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


@pytest.fixture(scope="session")
def mlflow_tracking_server(tmp_path_factory):
    """A real `mlflow server` (its own virtualenv, .venv-mlflow) on a free 127.0.0.1 port,
    with a SQLite store and artifacts proxied under a temporary folder; yields its URL.
    Log to it with the mlflow client: `mlflow.set_tracking_uri(url)`."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [
        str(ROOT / ".venv-mlflow" / "bin" / "mlflow"), "server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
    ]  # fmt: skip
    log_path = folder / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"

    def healthy():
        if process.poll() is not None:
            raise AssertionError(f"mlflow server exited:\n{log_path.read_text()}")
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout=120, interval=0.5)
        yield url
    finally:
        stop_mlflow_server(process)


def stop_mlflow_server(process: subprocess.Popen) -> None:
    """Stop an `mlflow server` started with `start_new_session=True`: its whole process group
    (the server, its web workers, its job runner), then the job queue's folder it made in
    /dev/shm, which it leaves behind."""
    job_queues = {
        variable.partition(b"=")[2].decode()
        for pid in process_group(process.pid)
        for variable in environ_of(pid)
        if variable.startswith(b"_MLFLOW_HUEY_STORAGE_PATH=")
    }
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for folder in job_queues:
        shutil.rmtree(folder, ignore_errors=True)


def process_group(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command's name, in parentheses, may hold spaces: fields follow its ")".
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == pgid:
                members.append(int(stat.parent.name))
    return members


def environ_of(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
