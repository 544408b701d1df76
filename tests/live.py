"""A live portal for the tests that drive it from outside (the CLI, the contract tests, the
stock MLflow client): the project's own gunicorn, as the Procfile runs it, on the test
database and the test Redis, beside a real Celery worker.

gunicorn's workers are other processes: they see only committed rows, so a test using it is
`django_db(transaction=True)` (and `worker`, so the worker is idle before pytest-django
empties the tables). Settings cannot be changed in-process for them: a test passes what it
needs as environment variables when the portal starts (`start_portal(env=…)`)."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import ROOT, free_port, stop_process, subprocess_env, wait_until

WEB_WORKERS = 2

# What every live portal of the tests runs with, whatever the test. Its database
# connections stay open between requests, as in production (DATABASE_CONN_MAX_AGE): idle,
# outside any transaction (Django commits or rolls back each request's), they hold no lock,
# so the TRUNCATE that empties the tables after a test never waits for them. A connection
# per request cost about twice the time per request here (92 ms against 233 ms median on
# the loaded 2-core VM), and schemathesis makes thousands.
LIVE_ENV = {
    # Contract fuzzing sends thousands of requests, some with a broken token on purpose;
    # the bad-token throttle (per address, in each worker's memory) would otherwise lock
    # the valid tokens of later tests out too.
    "API_TOKEN_FAILURE_LIMIT": "1000000",
    # Content types read anew on each request (tests/settings.py says why).
    "TESTS_LIVE_PORTAL": "1",
}


@dataclass
class LivePortal:
    """A running gunicorn: its URL, the master's Popen and its log."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def worker_pids(self) -> list[int]:
        """The pids of gunicorn's workers (the master's children)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def workers_cpu_seconds(self) -> float:
        """utime + stime used so far by the running workers (the server's CPU)."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.worker_pids():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return total / ticks


@contextlib.contextmanager
def start_portal(
    log_path: Path, env: dict | None = None, workers: int = WEB_WORKERS, port: int | None = None
):
    """Run gunicorn (mlops_portal/gunicorn.conf.py, its own control socket and metrics
    folder) on a free 127.0.0.1 port, logging to `log_path`, until the block ends; yield a
    `LivePortal`. `env` adds or overrides settings (environment variables), e.g. a private
    broker's CELERY_BROKER_URL or the ARTIFACT_S3_* of a test's S3 server."""
    bind = f"127.0.0.1:{port or free_port()}"
    var_dir = Path(tempfile.mkdtemp(prefix="live-"))  # short: a socket path has 108 bytes
    environment = {**subprocess_env(), **LIVE_ENV, "VAR_DIR": str(var_dir), "PORTAL_BIND": bind}
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the instance's own folder
    environment.update(env or {})
    command = [
        *(sys.executable, "-m", "gunicorn", "mlops_portal.wsgi"),
        *("-c", "mlops_portal/gunicorn.conf.py", "--bind", bind, "--workers", str(workers)),
        *("--timeout", "120"),
    ]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    portal = LivePortal(f"http://{bind}", process, log_path)
    try:
        wait_until(lambda: answers(portal, workers), timeout=60, interval=0.2)
        yield portal
    finally:
        stop_process(process)
        shutil.rmtree(var_dir, ignore_errors=True)


def answers(portal: LivePortal, workers: int) -> bool:
    """gunicorn answers /healthz, and has all its workers booted."""
    if portal.process.poll() is not None:
        raise AssertionError(f"gunicorn exited:\n{portal.log_path.read_text()[-3000:]}")
    try:
        up = httpx.get(f"{portal.url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
    return up and len(portal.worker_pids()) == workers
