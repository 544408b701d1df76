"""The live stack `make chaos` attacks: a private Redis, a fresh PostgreSQL database,
gunicorn, the Celery workers, beat and the outbox relay.

Every process is started in its own session so it can be stopped, or killed with -9, as a
group by its pid; nothing is ever looked up by name. Model servers started by the deploy
worker are found through /proc by their command line under this run's folder."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SERVER_MODULE = "deployments.serving.server"
PASSWORD = "chaos-Password-1234"  # only ever valid inside this run's throwaway database

# One Django start-up prepares the database (Django starts slowly on a busy machine): it
# migrates, creates the users (their roles are the Django groups made by migration 0002)
# with an API token each, and writes the OpenAPI schema. Run with `manage.py shell -c` so
# it uses the project's own services.
SETUP = """
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from mlops_portal.core.tokens import create_token

call_command("migrate", "--noinput", verbosity=0)
User = get_user_model()
secrets = {}
for key, username, role in USERS:
    if role == "superuser":
        user = User.objects.create_superuser(username, f"{username}@example.com", PASSWORD)
    else:
        user = User.objects.create_user(username, f"{username}@example.com", PASSWORD)
        user.groups.add(Group.objects.get(name=role))
    secrets[key] = create_token(user, "chaos")[1]
call_command("spectacular", "--format", "openapi-json", "--file", SCHEMA_PATH)
print("CHAOS_SETUP " + json.dumps({"tokens": secrets}))
"""
USERS = [
    ("admin", "chaos-admin", "superuser"),
    ("engineer", "chaos-engineer", "mlops_engineer"),
    ("engineer2", "chaos-engineer2", "mlops_engineer"),
    ("scientist", "chaos-scientist", "data_scientist"),
]


def log(message: str) -> None:
    """One progress line, flushed at once (the run is long; people watch it)."""
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll `condition` until truthy and return its value; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # a service still starting refuses connections
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f} s")
        time.sleep(interval)


class Process:
    """A child started in its own session, logging to a file; stopped as a group by pid."""

    def __init__(self, name: str, command: list[str], env: dict, log_dir: Path):
        self.name, self.command, self.env = name, command, env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None

    def start(self, cwd: Path = ROOT) -> "Process":
        with open(self.log_path, "ab") as output:
            self.popen = subprocess.Popen(
                self.command,
                cwd=cwd,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        """kill -9 of the whole group (a Celery worker and its pool), no warning, no cleanup."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout: float = 15) -> None:
        if not self.alive():
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.popen.wait()

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _signal_group(self, signum) -> None:
        try:
            os.killpg(self.pid, signum)  # its own session: the group id is its pid
        except ProcessLookupError:
            pass


class Stack:
    """Everything one chaos run needs, started by `start` and removed by `stop`."""

    def __init__(self, *, web_workers: int = 4, lease_seconds: int = 10, keep: bool = False):
        self.web_workers = web_workers
        self.lease_seconds = lease_seconds
        self.keep = keep
        self.folder = Path(tempfile.mkdtemp(prefix="chaos-"))
        self.log_dir = self.folder / "logs"
        self.log_dir.mkdir()
        self.db_name = f"chaos_{os.getpid()}"
        self.server_url = pg_server_url(os.environ.get("DATABASE_URL", ""))
        self.database_url = self.server_url.rstrip("/") + "/" + self.db_name
        self.redis_port = free_port()
        self.web_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.web_port}"
        self.processes: dict[str, Process] = {}
        self.redis: Process | None = None
        self.db_created = False
        self.tokens: dict[str, str] = {}

    # --- environment ------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def env(self) -> dict:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
        env.update(
            DJANGO_SETTINGS_MODULE="mlops_portal.settings",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            CELERY_BROKER_URL=self.redis_url,
            VAR_DIR=str(self.folder / "var"),
            MEDIA_ROOT=str(self.folder / "media"),
            SERVING_DIR=str(self.folder / "serving"),
            STATIC_ROOT=str(self.folder / "static"),
            # The API needs no collected static files; pages still render.
            STATICFILES_STORAGE="django.contrib.staticfiles.storage.StaticFilesStorage",
            SECRET_KEY="chaos-" + os.urandom(24).hex(),
            DJANGO_DEBUG="false",
            SECURE_SSL_REDIRECT="false",
            SESSION_COOKIE_SECURE="false",
            CSRF_COOKIE_SECURE="false",
            SECURE_HSTS_SECONDS="0",
            PORTAL_BASE_URL=self.base_url,
            # A killed deploy job is noticed by the reconciler (every 30 s via beat) once
            # its lease runs out; a lost queued message is sent again after this long.
            DEPLOY_LEASE_SECONDS=str(self.lease_seconds),
            DEPLOY_RESEND_QUEUED_SECONDS="5",
            # Hundreds of requests a second from a few tokens: the rate limits count, never refuse.
            API_THROTTLE_TOKEN_RATE="100000000/minute",
            API_THROTTLE_USER_RATE="100000000/minute",
            PYTHONUNBUFFERED="1",
        )
        return env

    def manage(self, *args: str, timeout: float = 300) -> str:
        """Run `manage.py` with the stack's environment; return its stdout or raise."""
        result = subprocess.run(
            [PY, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    # --- start ------------------------------------------------------------------------

    def start(self) -> None:
        log(f"Run folder {self.folder}; database {self.db_name}; Redis port {self.redis_port}")
        for sub in ("var", "media", "serving", "static", "redis"):
            (self.folder / sub).mkdir(exist_ok=True)
        self.start_redis()
        self.create_database()
        log("Migrating, creating users and tokens, writing the OpenAPI schema")
        self.set_up_database()
        self.start_services()

    def start_redis(self) -> None:
        """A private Redis that may be killed: append-only, fsync on every write, so a
        restart keeps what it had acknowledged (an outage, not a data loss)."""
        command = [
            "redis-server",
            "--port", str(self.redis_port), "--bind", "127.0.0.1",
            "--dir", str(self.folder / "redis"), "--save", "",
            "--appendonly", "yes", "--appendfsync", "always",
        ]  # fmt: skip
        self.redis = Process("redis", command, self.env(), self.log_dir).start()
        wait_for(self.redis_answers, 15, what="Redis answering")

    def redis_answers(self) -> bool:
        client = redis.Redis(port=self.redis_port, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def create_database(self) -> None:
        with psycopg.connect(self.server_url.rstrip("/") + "/postgres", autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            db.execute(f'CREATE DATABASE "{self.db_name}"')
        self.db_created = True

    @property
    def schema_path(self) -> Path:
        return self.folder / "schema.json"

    def set_up_database(self) -> None:
        code = (
            f"USERS = {USERS!r}\nPASSWORD = {PASSWORD!r}\n"
            f"SCHEMA_PATH = {str(self.schema_path)!r}\n{SETUP}"
        )
        output = self.manage("shell", "-c", code)
        line = next(li for li in output.splitlines() if li.startswith("CHAOS_SETUP "))
        answer = json.loads(line.removeprefix("CHAOS_SETUP "))
        self.tokens = answer["tokens"]

    def start_services(self) -> None:
        celery = [PY, "-m", "celery", "-A", "mlops_portal"]
        commands = {
            "web": [
                str(Path(PY).parent / "gunicorn"), "mlops_portal.wsgi",
                "--bind", f"127.0.0.1:{self.web_port}", "--workers", str(self.web_workers),
                "--access-logfile", "-",
            ],
            "worker": self.worker_command(),
            "notifier": [
                *celery, "worker", "--loglevel", "INFO", "--queues", "notifications",
                "--concurrency", "1", "--hostname", f"chaos-notifier-{os.getpid()}@localhost",
                "--without-gossip", "--without-mingle",
            ],
            "beat": [
                *celery, "beat", "--loglevel", "INFO", "--pidfile=",
                "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
            ],
            "relay": [PY, "manage.py", "relay_outbox"],
        }  # fmt: skip
        for name, command in commands.items():
            self.processes[name] = Process(name, command, self.env(), self.log_dir).start()
        log(f"Started {', '.join(commands)}")
        wait_for(self.web_answers, 60, what="gunicorn answering /healthz")
        self.wait_worker_ready(self.processes["worker"])
        log(f"Portal at {self.base_url}")

    def worker_command(self) -> list[str]:
        return [
            PY, "-m", "celery", "-A", "mlops_portal", "worker", "--loglevel", "INFO",
            "--queues", "default,deploy,probes", "--concurrency", "2",
            "--hostname", f"chaos-worker-{os.getpid()}@localhost",
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip

    def web_answers(self) -> bool:
        if not self.processes["web"].alive():
            raise RuntimeError(f"gunicorn exited:\n{self.processes['web'].tail()}")
        return httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200

    def wait_worker_ready(self, worker: Process, start: int = 0, timeout: float = 60) -> None:
        """A worker is ready when its log, after byte `start`, says so (`celery@… ready.`)."""

        def ready():
            if not worker.alive():
                raise RuntimeError(f"the Celery worker exited:\n{worker.tail()}")
            with open(worker.log_path, "rb") as handle:
                handle.seek(start)
                return b" ready." in handle.read()

        wait_for(ready, timeout, what="the Celery worker ready")

    def restart_worker(self) -> None:
        """Start a fresh deploy worker after a kill -9; return when it consumes."""
        worker = self.processes["worker"]
        size = worker.log_path.stat().st_size
        worker.start()
        self.wait_worker_ready(worker, start=size)  # `ready` lines of older starts don't count

    # --- Redis outage -----------------------------------------------------------------

    def kill_redis(self) -> None:
        self.redis.kill9()

    def start_redis_again(self) -> None:
        self.redis.start()
        wait_for(self.redis_answers, 30, what="Redis answering again")

    # --- model servers ----------------------------------------------------------------

    def model_servers(self) -> dict[int, int]:
        """Model servers of this run still running: {pid: port}."""
        found = {}
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                parts = cmdline.read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if SERVER_MODULE in parts and any(str(self.folder) in part for part in parts):
                port = parts[parts.index("--port") + 1] if "--port" in parts else "0"
                found[int(cmdline.parent.name)] = int(port)
        return found

    # --- stop -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything this run started, each by its pid; drop the database."""
        for process in reversed(list(self.processes.values())):
            process.stop()
        for pid in self.model_servers():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        wait_for_gone(self.model_servers, 10)
        for pid in self.model_servers():  # did not stop on SIGTERM
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.redis is not None:
            self.redis.stop()
        if self.db_created:
            self.drop_database()
        if self.keep:
            log(f"Logs kept in {self.log_dir}")
        else:
            shutil.rmtree(self.folder, ignore_errors=True)

    def drop_database(self) -> None:
        try:
            with psycopg.connect(self.server_url.rstrip("/") + "/postgres", autocommit=True) as db:
                db.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        except psycopg.Error as exc:
            log(f"Could not drop database {self.db_name}: {exc}")


def wait_for_gone(find, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while find() and time.monotonic() < deadline:
        time.sleep(0.2)


def pg_server_url(database_url: str) -> str:
    """The PostgreSQL server of DATABASE_URL (or 127.0.0.1:5432 as postgres), no database."""
    if not database_url.startswith(("postgres://", "postgresql://")):
        return "postgresql://postgres@127.0.0.1:5432"
    parsed = urlparse(database_url)
    return urlunparse(parsed._replace(scheme="postgresql", path="", query="", fragment=""))
