"""The API benchmark behind `make bench`: seed PostgreSQL, serve the portal with gunicorn,
drive it with concurrent clients and compare the server CPU per request with the targets.

Run from the repository root: `.venv/bin/python bench/run.py`. It prints a table and writes
bench-results/registry.json. Exit code 0 even when a target fails (it is a report); 1 when the
server could not start or a request did not answer the expected status.

To add a workload, append a `Workload` to WORKLOADS; its requests rotate over the seeded data
through `path_fn(i)` / `body_fn(i)`, where i counts the requests of that run.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
RESULTS_DIR = ROOT / "bench-results"
RESULTS_FILE = RESULTS_DIR / "registry.json"
SERVER_LOG = RESULTS_DIR / "gunicorn.log"

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Overridable, so two people can bench on one PostgreSQL and Redis at the same time.
BENCH_DB = os.environ.get("BENCH_DB", "mlops_bench")
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")

MODELS = 200
VERSIONS_PER_MODEL = 25
# A year of a busy platform team, for the dashboards: one deployment every ~26 minutes.
DEPLOYMENTS = 20_000
INCIDENTS = 2_000
WEB_WORKERS = 2
SERVER_START_TIMEOUT_S = 30.0
WORKER_RSS_TARGET_MB = 200.0
FLOOR_EXPECTED_MS = 0.6
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Shared by gunicorn and this process (which seeds and counts queries on the same database).
DJANGO_ENV = {
    "DJANGO_SETTINGS_MODULE": "mlops_portal.settings",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}",
    "DATABASE_CONN_MAX_AGE": "600",
    "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "DJANGO_DEBUG": "false",
    "SECURE_SSL_REDIRECT": "false",
    "SECURE_HSTS_SECONDS": "0",
    "STATICFILES_STORAGE": "django.contrib.staticfiles.storage.StaticFilesStorage",
    "ROOT_URLCONF": "bench.urls",
    # No Celery worker runs: registrations only enqueue here, and the db is flushed at the end.
    "CELERY_BROKER_URL": BROKER_URL,
    "LOG_LEVEL": "WARNING",
    # The rate limits run (their cost is part of each request) but never refuse the clients.
    "API_THROTTLE_TOKEN_RATE": "100000000/minute",
    "API_THROTTLE_USER_RATE": "100000000/minute",
}

REGISTER_BODY = {
    "artifact_uri": "http://127.0.0.1:9/none.joblib",
    "sample_input": [[1.0, 2.0]],
    "metrics": {"accuracy": 0.9},
}


# --- workloads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How hard and how long each workload is driven (command-line options)."""

    clients: int = 8
    max_requests: int = 2000  # per workload; the run also stops after duration_s
    duration_s: float = 4.0
    warmup_requests: int = 50


@dataclass(frozen=True)
class Workload:
    name: str
    method: str
    path_fn: Callable[[int], str]
    body_fn: Callable[[int], dict] | None = None
    expected_status: int = 200
    target_ms: float | None = None  # server CPU per request; None: shown for reference only
    auth: bool = True
    # A smaller page of the same list: equal query counts show there is no N+1.
    small_path: str | None = None


SEARCH_TERMS = ("benchmark", "model%2042", "version", "markdown%20description")


def model_name(i: int) -> str:
    return f"bench-model-{i % MODELS:03d}"


def version_number(i: int) -> int:
    # Steps to the next number after a full round of models, so all 5,000 versions are hit.
    return i // MODELS % VERSIONS_PER_MODEL + 1


WORKLOADS = [
    Workload("floor", "GET", lambda i: "/bench/floor/", auth=False),
    Workload(
        "get one version",
        "GET",
        lambda i: f"/api/v1/models/{model_name(i)}/versions/{version_number(i)}/",
        target_ms=2.0,
    ),
    Workload(
        "25 versions",
        "GET",
        lambda i: f"/api/v1/models/{model_name(i)}/versions/?page_size=25",
        target_ms=3.5,
        small_path=f"/api/v1/models/{model_name(0)}/versions/?page_size=5",
    ),
    Workload(
        "models page of 100",
        "GET",
        lambda i: f"/api/v1/models/?page_size=100&page={i % 2 + 1}",
        target_ms=8.0,
        small_path="/api/v1/models/?page_size=10",
    ),
    Workload(
        "register by URI",
        "POST",
        # Consecutive requests go to different models, so concurrent POSTs rarely wait on
        # the same row lock that hands out version numbers.
        lambda i: f"/api/v1/models/{model_name(i)}/versions/",
        body_fn=lambda i: REGISTER_BODY,
        expected_status=201,
        target_ms=3.5,
    ),
    # The same registration through the MLflow API, as MLflow's client sends it.
    Workload(
        "MLflow register",
        "POST",
        lambda i: "/api/2.0/mlflow/model-versions/create",
        body_fn=lambda i: {"name": model_name(i), "source": REGISTER_BODY["artifact_uri"]},
    ),
    # Search over every kind at this scale (the docs issue: under 100 ms).
    Workload(
        "search",
        "GET",
        lambda i: f"/api/v1/search/?q={SEARCH_TERMS[i % len(SEARCH_TERMS)]}",
        target_ms=100.0,
    ),
    # The dashboards' figures over 20,000 deployments and 2,000 incidents (a year), by
    # week, for everyone or one team; the page draws the same functions.
    Workload(
        "DORA by week",
        "GET",
        lambda i: "/api/v1/metrics/dora/?period=week" + ("&team=team-1" if i % 2 else ""),
        target_ms=100.0,
    ),
    Workload(
        "incidents by month",
        "GET",
        lambda i: "/api/v1/metrics/incidents/?period=month&since=2025-12-01T00:00:00Z",
        target_ms=100.0,
    ),
]

# The same reads and registration through the portal's MLflow-compatible API, as MLflow's
# client sends them. bench/mlflow_peer.py drives them against a real MLflow server too;
# `make bench` runs them there, not here. bench/instructions.py and profile_endpoint.py
# take them by name like the workloads above.
MLFLOW_API = "/api/2.0/mlflow"
MLFLOW_PREFIX = "MLflow API "
MLFLOW_SOURCE = "http://127.0.0.1:9/model.joblib"


def mlflow_page_token(offset: int) -> str:
    """MLflow's page token for `offset` (base64 of its JSON)."""
    import base64

    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


MLFLOW_API_WORKLOADS = [
    Workload(
        MLFLOW_PREFIX + "get one version",
        "GET",
        lambda i: (
            f"{MLFLOW_API}/model-versions/get?name={model_name(i)}&version={version_number(i)}"
        ),
    ),
    Workload(
        MLFLOW_PREFIX + "25 versions",
        "GET",
        lambda i: (
            f"{MLFLOW_API}/model-versions/search?max_results=25&filter="
            + quote(f"name = '{model_name(i)}'")
        ),
    ),
    Workload(
        MLFLOW_PREFIX + "models page of 100",
        "GET",
        lambda i: (
            f"{MLFLOW_API}/registered-models/search?max_results=100"
            + ("" if i % 2 == 0 else "&page_token=" + quote(mlflow_page_token(100)))
        ),
    ),
    Workload(
        MLFLOW_PREFIX + "register",
        "POST",
        lambda i: f"{MLFLOW_API}/model-versions/create",
        body_fn=lambda i: {"name": model_name(i), "source": MLFLOW_SOURCE},
    ),
]


def workload_named(name: str) -> Workload:
    """A workload of either list, by name (for the scripts that take one by name)."""
    return {w.name: w for w in WORKLOADS + MLFLOW_API_WORKLOADS}[name]


@dataclass
class Result:
    workload: Workload
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    queries: int | None = None
    queries_small: int | None = None

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_s / self.requests if self.requests else float("nan")

    @property
    def passed(self) -> bool | None:
        if self.workload.target_ms is None:
            return None
        return self.cpu_ms_per_request <= self.workload.target_ms

    def percentile_ms(self, p: int) -> float:
        if len(self.latencies) < 2:
            return float("nan")
        return 1000 * statistics.quantiles(self.latencies, n=100)[p - 1]

    def as_json(self) -> dict:
        def number(value: float, digits: int = 2) -> float | None:
            return None if math.isnan(value) else round(value, digits)  # NaN is not JSON

        w = self.workload
        return {
            "name": w.name,
            "method": w.method,
            "example_path": w.path_fn(0),
            "requests": self.requests,
            "errors": len(self.errors),
            "requests_per_s": round(self.requests / self.elapsed_s, 1) if self.elapsed_s else 0,
            "p50_ms": number(self.percentile_ms(50)),
            "p95_ms": number(self.percentile_ms(95)),
            "p99_ms": number(self.percentile_ms(99)),
            "server_cpu_ms_per_request": number(self.cpu_ms_per_request, 3),
            "target_cpu_ms_per_request": w.target_ms,
            "passed": self.passed,
            "queries_per_request": self.queries,
            "queries_small_page": self.queries_small,
        }


# --- database -------------------------------------------------------------------------------


def recreate_database() -> None:
    """Start from the same data every run: drop, create and migrate take about 2 s."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    migrate = subprocess.run(
        [VENV_BIN / "python", "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=os.environ | DJANGO_ENV,
        capture_output=True,
        text=True,
    )
    if migrate.returncode != 0:
        sys.exit(f"manage.py migrate failed:\n{migrate.stdout}\n{migrate.stderr}")


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.update(DJANGO_ENV)
    # Only this process uses the test client, whose requests come from "testserver".
    os.environ["ALLOWED_HOSTS"] = "127.0.0.1,localhost,testserver"
    import django

    django.setup()


def seed() -> str:
    """Insert the models, versions and tags in bulk; return the API token's secret."""
    from django.contrib.auth.models import Group, User
    from django.db import transaction
    from django.utils import timezone

    from deployments.models import ModelVersion, RegisteredModel
    from mlops_portal.core.tokens import create_token

    now = timezone.now()
    with transaction.atomic():
        user = User.objects.create_user("bench", email="bench@example.com")
        user.groups.add(Group.objects.get(name="data_scientist"))
        tags = ("tabular", "nlp", "vision", "candidate", "champion")
        models = RegisteredModel.objects.bulk_create(
            RegisteredModel(
                name=model_name(i),
                description=f"Benchmark model {i}: **markdown** description.",
                owner=user,
                team=f"team-{i % 5}",
                latest_version_number=VERSIONS_PER_MODEL,
                tags=sorted({tags[i % 3], tags[3]}),
            )
            for i in range(MODELS)
        )
        ModelVersion.objects.bulk_create(
            seed_version(model, number, user, now)
            for model in models
            for number in range(1, VERSIONS_PER_MODEL + 1)
        )
        seed_history(user, now)
        _token, secret = create_token(user, "bench")
    analyze()
    return secret


def analyze() -> None:
    """Statistics, as autovacuum keeps them on a live database: without them the planner
    takes the freshly bulk-loaded tables for empty ones."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def seed_history(user, now) -> None:
    """A year of deployments (a tenth rolled back, a tenth failed) and incidents (a third
    linked to a deployment), in final states so nothing acts on them."""
    from datetime import timedelta

    from django.db.models import F, OuterRef, Subquery

    from deployments.choices import DeploymentState as State
    from deployments.models import Deployment, ModelVersion, Target
    from monitoring.models import Incident

    production, staging = Target.objects.bulk_create(
        Target(name=name, environment=environment, created_by=user)
        for name, environment in (("bench-prod", "production"), ("bench-staging", "staging"))
    )
    version_ids = list(ModelVersion.objects.order_by("pk").values_list("pk", flat=True))
    states = [State.ROLLED_BACK, State.FAILED] + [State.SUPERSEDED] * 8
    deployments = Deployment.objects.bulk_create(
        Deployment(
            # Each version goes out four times in a row (redeploys), versions spread over
            # the year, so every week has first deployments to measure lead time on.
            version_id=version_ids[(DEPLOYMENTS - i) // 4 % len(version_ids)],
            target=production if i % 3 else staging,
            state=states[i % len(states)],
            reason="bench history",
            requested_by=user,
            approved_by=user,
            queued_at=now - timedelta(minutes=26 * i - 30),
            finished_at=now - timedelta(minutes=26 * i - 40),
        )
        for i in range(1, DEPLOYMENTS + 1)
    )
    # created_at is stamped on insert; move it to the request time of each deployment, and
    # register each version up to four days before its first deployment.
    Deployment.objects.update(created_at=F("queued_at") - timedelta(minutes=30))
    first_deployed = (
        Deployment.objects.filter(version=OuterRef("pk"))
        .order_by("created_at")
        .values("created_at")
    )
    ModelVersion.objects.update(
        created_at=Subquery(first_deployed[:1]) - timedelta(hours=1) * (F("pk") % 96)
    )
    Incident.objects.bulk_create(
        Incident(
            title=f"bench incident {i}",
            severity=f"sev{i % 4 + 1}",
            state="resolved",
            source="manual",
            opened_at=now - timedelta(hours=4.3 * i),
            acknowledged_at=now - timedelta(hours=4.3 * i - 0.2),
            resolved_at=now - timedelta(hours=4.3 * i - (i % 7 + 1) / 3),
            deployment=deployments[i * 7] if i % 3 == 0 else None,
        )
        for i in range(1, INCIDENTS + 1)
    )


def seed_version(model, number: int, user, now):
    from deployments.choices import VersionStatus
    from deployments.models import ModelVersion

    return ModelVersion(
        model=model,
        number=number,
        artifact_uri=f"https://artifacts.example.com/{model.name}/v{number}.joblib",
        artifact_size=1024 * number,
        artifact_sha256=f"{number:064x}",
        metrics={"accuracy": round(0.8 + number / 200, 4), "f1": round(0.75 + number / 250, 4)},
        params={"max_depth": number % 8 + 2, "n_estimators": 100},
        source_url=f"https://git.example.com/ml/{model.name}/commit/{number:040x}",
        description=f"Version {number}.",
        sample_input=[[1.0, 2.0]],
        status=VersionStatus.READY,
        status_detail="Loaded and predicted 1 sample rows: [0].",
        validation_attempts=1,
        validation_started_at=now,
        validated_at=now,
        registered_by=user,
        tags=["champion"] if number == VERSIONS_PER_MODEL else ["candidate"],
    )


def count_queries(workload: Workload, secret: str) -> tuple[int, int | None]:
    """Queries per request, in-process through the test client on the bench database."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(headers={"Authorization": f"Token {secret}"} if workload.auth else {})

    def queries(path: str, i: int) -> int:
        body = json.dumps(workload.body_fn(i)) if workload.body_fn else None
        with CaptureQueriesContext(connection) as captured:
            response = client.generic(
                workload.method, path, data=body or "", content_type="application/json"
            )
        if response.status_code != workload.expected_status:
            raise RuntimeError(f"{workload.method} {path} answered HTTP {response.status_code}")
        return len(captured)

    # The first request may write the token's last use; count a steady-state one.
    queries(workload.path_fn(0), 0)
    large = queries(workload.path_fn(1), 1)
    small = queries(workload.small_path, 2) if workload.small_path else None
    return large, small


# --- server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    """Start gunicorn in its own process group and wait until every worker answers."""
    RESULTS_DIR.mkdir(exist_ok=True)
    env = os.environ | DJANGO_ENV
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.pop("ALLOWED_HOSTS", None)
    with SERVER_LOG.open("wb") as log:
        server = subprocess.Popen(
            [
                VENV_BIN / "gunicorn",
                "mlops_portal.wsgi",
                "--workers",
                str(WEB_WORKERS),
                "--worker-class",
                "sync",
                "--bind",
                f"127.0.0.1:{port}",
                # The default control socket path is shared with any other gunicorn of this
                # user (e.g. `make run`); the benchmark must not take it over.
                "--no-control-socket",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            break
        if len(worker_pids(server.pid)) == WEB_WORKERS and answers(port, "/bench/floor/"):
            return server
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"gunicorn did not start; see {SERVER_LOG}:\n{tail(SERVER_LOG)}")


def answers(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def stop_server(server: subprocess.Popen) -> None:
    """Stop gunicorn gracefully, then make sure nothing of its process group is left."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def worker_pids(master_pid: int) -> list[int]:
    pids = []
    try:
        for task in Path(f"/proc/{master_pid}/task").iterdir():
            pids += [int(pid) for pid in (task / "children").read_text().split()]
    except FileNotFoundError:
        return []
    return sorted(pids)


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of `pids`, from /proc/<pid>/stat (fields 14 and 15)."""
    ticks = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def peak_rss_mb(pids: list[int]) -> float:
    """The largest VmHWM (peak resident set) among `pids`, in MB."""
    peaks = [0.0]
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


# --- load -----------------------------------------------------------------------------------


def drive(workload: Workload, port: int, secret: str, clients: int, requests: int, seconds: float):
    """Send up to `requests` requests from `clients` threads for at most `seconds`."""
    result = Result(workload)
    headers = {"Content-Type": "application/json"}
    if workload.auth:
        headers["Authorization"] = f"Token {secret}"
    # next() on itertools.count is atomic in CPython, so threads share it without a lock.
    indexes = itertools.count()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        # Sync gunicorn workers close every connection; http.client reopens it on the next
        # request, so this stays one persistent client object per thread.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.perf_counter() < deadline:
            i = next(indexes)
            if i >= requests:
                break
            one_request(conn, workload, headers, i, result)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.elapsed_s = time.perf_counter() - started
    return result


def one_request(conn, workload: Workload, headers: dict, i: int, result: Result) -> None:
    path = workload.path_fn(i)
    body = json.dumps(workload.body_fn(i)).encode() if workload.body_fn else None
    started = time.perf_counter()
    try:
        conn.request(workload.method, path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        result.errors.append(f"{workload.method} {path}: {exc!r}")
        return
    result.latencies.append(time.perf_counter() - started)
    if response.status != workload.expected_status:
        result.errors.append(f"{workload.method} {path}: HTTP {response.status} {payload[:300]!r}")


def measure(workload: Workload, plan: Plan, server: subprocess.Popen, port: int, secret: str):
    """Warm up, then run the workload between two readings of the workers' CPU counters."""
    warmup = drive(workload, port, secret, plan.clients, plan.warmup_requests, plan.duration_s)
    pids = worker_pids(server.pid)
    before = cpu_seconds(pids)
    result = drive(workload, port, secret, plan.clients, plan.max_requests, plan.duration_s)
    after_pids = worker_pids(server.pid)
    if after_pids != pids:
        result.errors.append(f"gunicorn workers changed during the run: {pids} -> {after_pids}")
    else:
        result.cpu_s = cpu_seconds(pids) - before
    result.errors[:0] = warmup.errors
    return result


# --- report ---------------------------------------------------------------------------------


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "ref"}[passed]


def report(results: list[Result], rss_mb: float, plan: Plan) -> None:
    header = (
        f"{'endpoint':<20} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'CPU ms/req':>10} {'queries':>9} {'target':>7}  result"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        w = r.workload
        queries = f"{r.queries}" if r.queries_small is None else f"{r.queries_small}/{r.queries}"
        target = f"<={w.target_ms:g}" if w.target_ms is not None else f"~{FLOOR_EXPECTED_MS:g}"
        rps = r.requests / r.elapsed_s if r.elapsed_s else 0
        print(
            f"{w.name:<20} {r.requests:>8} {rps:>7.0f} {r.percentile_ms(50):>7.1f} "
            f"{r.percentile_ms(95):>7.1f} {r.percentile_ms(99):>7.1f} "
            f"{r.cpu_ms_per_request:>10.2f} {queries:>9} {target:>7}  {verdict(r.passed)}"
        )
    rss_verdict = verdict(rss_mb <= WORKER_RSS_TARGET_MB)
    print(f"\nweb worker peak RSS (VmHWM, max of {WEB_WORKERS}): {rss_mb:.1f} MB")
    print(f"  target <= {WORKER_RSS_TARGET_MB:g} MB: {rss_verdict}")
    print(
        f"\n{plan.clients} client threads, {WEB_WORKERS} sync gunicorn workers (which close "
        f"every connection), up to {plan.max_requests} requests or {plan.duration_s:g} s per "
        f"endpoint after {plan.warmup_requests} warm-up requests.\n"
        "CPU ms/req: utime+stime of the gunicorn workers / requests. queries: per request, "
        "counting BEGIN/COMMIT (small page/large page where both are measured)."
    )
    for r in results:
        for error in r.errors[:5]:
            print(f"ERROR {r.workload.name}: {error}")
        if len(r.errors) > 5:
            print(f"ERROR {r.workload.name}: ... {len(r.errors) - 5} more")


def write_json(results: list[Result], rss_mb: float, plan: Plan) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    document = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "setup": {
            "models": MODELS,
            "versions_per_model": VERSIONS_PER_MODEL,
            "web_workers": WEB_WORKERS,
            **asdict(plan),
            "cpus": os.cpu_count(),
        },
        "workloads": [r.as_json() for r in results],
        "worker_peak_rss_mb": round(rss_mb, 1),
        "worker_rss_target_mb": WORKER_RSS_TARGET_MB,
        "worker_rss_passed": rss_mb <= WORKER_RSS_TARGET_MB,
    }
    RESULTS_FILE.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {RESULTS_FILE.relative_to(ROOT)}")


def flush_broker() -> None:
    import redis

    try:
        redis.Redis.from_url(BROKER_URL, socket_timeout=5).flushdb()
    except redis.RedisError as exc:
        print(f"warning: could not flush {BROKER_URL}: {exc}", file=sys.stderr)


# --- main -----------------------------------------------------------------------------------


def parse_args() -> tuple[Plan, list[Workload]]:
    default = Plan()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=default.clients)
    parser.add_argument("--requests", type=int, default=default.max_requests, help="per workload")
    parser.add_argument("--duration", type=float, default=default.duration_s, help="seconds")
    parser.add_argument(
        "--only", action="append", choices=[w.name for w in WORKLOADS], help="repeatable"
    )
    args = parser.parse_args()
    plan = Plan(clients=args.clients, max_requests=args.requests, duration_s=args.duration)
    return plan, [w for w in WORKLOADS if not args.only or w.name in args.only]


def main() -> int:
    plan, workloads = parse_args()
    # A plain SIGTERM would skip the `finally` that stops gunicorn (in its own session).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(f"stopped by signal {signum}"))
    started = time.monotonic()
    recreate_database()
    setup_django()
    secret = seed()
    print(f"seeded {MODELS} models x {VERSIONS_PER_MODEL} versions in {BENCH_DB}")
    port = free_port()
    server = None
    try:
        server = start_server(port)
        results = []
        for workload in workloads:
            result = measure(workload, plan, server, port, secret)
            result.queries, result.queries_small = count_queries(workload, secret)
            results.append(result)
        rss_mb = peak_rss_mb(worker_pids(server.pid))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            stop_server(server)
        flush_broker()
    print()
    report(results, rss_mb, plan)
    write_json(results, rss_mb, plan)
    print(f"bench took {time.monotonic() - started:.0f} s")
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
