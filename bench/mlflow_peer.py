"""The MLflow peer of the registry benchmark: a real `mlflow server` (gunicorn, 2 sync
workers, PostgreSQL in its own database) beside the portal (bench/run.py's gunicorn and
data), the same 200 models x 25 versions in both, measured in alternating rounds.

Run from the repository root: `.venv/bin/python bench/mlflow_peer.py [--rounds 3]`. For
each workload it prints the server CPU per request of MLflow, of the portal's `/api/v1/`
and of the portal's MLflow-compatible endpoints, and the ratios (MLflow / portal; above 1
means the portal is cheaper). CPU is utime + stime of the web workers only (for MLflow:
the gunicorn workers, not its job consumers), read from /proc around each run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import run
from bench.run import MODELS, VERSIONS_PER_MODEL, Plan, Workload, model_name

MLFLOW = run.ROOT / ".venv-mlflow" / "bin" / "mlflow"
# Both sides in databases of their own, so this never drops `make bench`'s; overridable, so
# two people can run it on one PostgreSQL and Redis at the same time.
MLFLOW_DB = os.environ.get("BENCH_MLFLOW_DB", "mlflow_bench")
PORTAL_DB = os.environ.get("BENCH_PEER_DB", "mlops_bench_mlflow_peer")
PORTAL_BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
MLFLOW_LOG = run.RESULTS_DIR / "mlflow-server.log"
SOURCE = run.MLFLOW_SOURCE
API = run.MLFLOW_API


def mlflow_workloads() -> dict[str, Workload]:
    """The four calls, as MLflow's client sends them (the same paths on both servers)."""
    return {w.name.removeprefix(run.MLFLOW_PREFIX): w for w in run.MLFLOW_API_WORKLOADS}


V1 = {w.name: w for w in run.WORKLOADS}
PORTAL_V1 = {
    "get one version": V1["get one version"],
    "25 versions": V1["25 versions"],
    "models page of 100": V1["models page of 100"],
    "register": V1["register by URI"],
}


# --- the MLflow server ------------------------------------------------------------------------


def recreate_mlflow_database() -> None:
    import psycopg

    with psycopg.connect(run.PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {MLFLOW_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {MLFLOW_DB}")


def start_mlflow(port: int) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES": "http"}
    command = [
        *(str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"),
        *("--backend-store-uri", f"postgresql+psycopg2://postgres@127.0.0.1:5432/{MLFLOW_DB}"),
        *("--default-artifact-root", str(run.RESULTS_DIR / "mlflow-artifacts")),
        *("--gunicorn-opts", "--worker-class sync --no-control-socket"),
    ]
    run.RESULTS_DIR.mkdir(exist_ok=True)
    with MLFLOW_LOG.open("wb") as log:
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            break
        if len(mlflow_workers(server.pid)) == 2 and run.answers(port, "/health"):
            return server
        time.sleep(0.5)
    run.stop_server(server)
    raise RuntimeError(f"mlflow server did not start; see {MLFLOW_LOG}:\n{run.tail(MLFLOW_LOG)}")


def stop_mlflow(server: subprocess.Popen) -> None:
    """Stop the server, then remove the job queue's folder it made in /dev/shm and leaves."""
    job_queue = mlflow_environment(server).get("_MLFLOW_HUEY_STORAGE_PATH")
    run.stop_server(server)
    if job_queue:
        shutil.rmtree(job_queue, ignore_errors=True)


def mlflow_environment(server: subprocess.Popen) -> dict[str, str]:
    """The variables `mlflow server` set for its workers (store URIs, artifact root, its
    options, its job queue's folder): the MLFLOW ones of a worker's environment."""
    workers = mlflow_workers(server.pid)
    try:
        variables = Path(f"/proc/{workers[0]}/environ").read_bytes().decode().split("\0")
    except (IndexError, OSError):  # no worker (any more)
        return {}
    return dict(v.split("=", 1) for v in variables if "MLFLOW" in v.partition("=")[0])


def mlflow_workers(mlflow_pid: int) -> list[int]:
    """The gunicorn workers: children of the gunicorn master among the server's children."""
    for child in run.worker_pids(mlflow_pid):
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"gunicorn" in cmdline:
            return run.worker_pids(child)
    return []


def seed_mlflow(port: int) -> None:
    """The same 200 models x 25 versions, through the REST API (8 clients)."""

    def call(path: str, body: dict) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request(
            "POST", f"{API}/{path}", json.dumps(body), {"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"seeding MLflow: {path} answered {response.status}")
        response.read()
        conn.close()

    def one_model(i: int) -> None:
        description = f"Benchmark model {i}: **markdown** description."
        call("registered-models/create", {"name": model_name(i), "description": description})
        for _ in range(VERSIONS_PER_MODEL):
            call("model-versions/create", {"name": model_name(i), "source": SOURCE})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one_model, range(MODELS)))
    import psycopg

    # Statistics, as on a live database (bench/run.py does the same for the portal).
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{MLFLOW_DB}") as conn:
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


def seed_portal() -> str:
    """bench/run.py's data in the portal's database of its own; the API token's secret.
    bench/run.py's helpers (flush_broker, start_server) then use that database and broker."""
    run.BENCH_DB, run.BROKER_URL = PORTAL_DB, PORTAL_BROKER_URL
    run.DJANGO_ENV["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{PORTAL_DB}"
    run.DJANGO_ENV["CELERY_BROKER_URL"] = PORTAL_BROKER_URL
    run.recreate_database()
    run.setup_django()
    return run.seed()


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    secret: str
    workers: list[int]


def cpu_ms(server: Server, workload: Workload, plan: Plan) -> float:
    """Warm up, then the CPU of the server's web workers per request of one run."""
    run.drive(workload, server.port, server.secret, plan.clients, plan.warmup_requests, 5)
    before = run.cpu_seconds(server.workers)
    result = run.drive(
        workload, server.port, server.secret, plan.clients, plan.max_requests, plan.duration_s
    )
    if result.errors:
        raise RuntimeError(f"{server.name} {workload.name}: {result.errors[0]}")
    return (run.cpu_seconds(server.workers) - before) * 1000 / max(result.requests, 1)


def rounds(servers: dict[str, Server], plan: Plan, count: int) -> dict[tuple[str, str], list]:
    """`count` rounds; in each, every workload on each side, the order alternating."""
    sides = {
        "mlflow": (servers["mlflow"], mlflow_workloads()),
        "portal /api/v1": (servers["portal"], PORTAL_V1),
        "portal MLflow API": (servers["portal"], mlflow_workloads()),
    }
    figures: dict[tuple[str, str], list] = {}
    for index in range(count):
        order = list(sides) if index % 2 == 0 else list(reversed(sides))
        for name in PORTAL_V1:
            for side in order:
                server, workloads = sides[side]
                figures.setdefault((side, name), []).append(cpu_ms(server, workloads[name], plan))
    return figures


# The targets: MLflow's CPU per request / the portal's, at least this (above 1, the
# portal is cheaper); the same target for `/api/v1/` and for the MLflow-compatible endpoints.
TARGETS = {
    "get one version": 2.0,
    "25 versions": 2.0,
    "models page of 100": 5.0,
    "register": 1.0,
}
RESULTS_FILE = run.RESULTS_DIR / "mlflow_peer.json"


def ratios(figures: dict[tuple[str, str], list]) -> list[dict]:
    """Per workload: the median CPU ms of each side, and MLflow / portal against the target."""
    rows = []
    for name in PORTAL_V1:
        theirs = statistics.median(figures[("mlflow", name)])
        row = {"workload": name, "target_ratio": TARGETS[name], "mlflow_cpu_ms": round(theirs, 3)}
        for key, side in (("v1", "portal /api/v1"), ("mlflow_api", "portal MLflow API")):
            ours = statistics.median(figures[(side, name)])
            ratio = theirs / ours
            row[f"{key}_cpu_ms"] = round(ours, 3)
            row[f"{key}_ratio"] = round(ratio, 2)
            row[f"{key}_passed"] = ratio >= TARGETS[name]
        rows.append(row)
    return rows


def report(rows: list[dict]) -> None:
    header = (
        f"{'workload':<20} {'mlflow':>8} {'/api/v1':>8} {'ratio':>6} {'':<4} "
        f"{'MLflow API':>10} {'ratio':>6} {'':<4} {'target':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        target = f"{row['target_ratio']:.0f}x"
        print(
            f"{row['workload']:<20} {row['mlflow_cpu_ms']:>8.2f} "
            f"{row['v1_cpu_ms']:>8.2f} {row['v1_ratio']:>5.2f}x {verdict(row['v1_passed']):<4} "
            f"{row['mlflow_api_cpu_ms']:>10.2f} {row['mlflow_api_ratio']:>5.2f}x "
            f"{verdict(row['mlflow_api_passed']):<4} {'>= ' + target:>7}"
        )
    print("CPU ms per request (median of rounds); ratio = MLflow / portal (higher: portal cheaper)")


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def write_json(rows: list[dict], plan: Plan, round_count: int) -> None:
    run.RESULTS_DIR.mkdir(exist_ok=True)
    document = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "setup": {
            "models": MODELS,
            "versions_per_model": VERSIONS_PER_MODEL,
            "web_workers": run.WEB_WORKERS,
            "rounds": round_count,
            **asdict(plan),
            "cpus": os.cpu_count(),
        },
        "workloads": rows,
        "passed": all(row["v1_passed"] and row["mlflow_api_passed"] for row in rows),
    }
    RESULTS_FILE.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {RESULTS_FILE.relative_to(run.ROOT)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=400, help="per workload and round")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per run")
    args = parser.parse_args()
    plan = Plan(clients=args.clients, max_requests=args.requests, duration_s=args.duration)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(f"stopped by signal {signum}"))
    secret = seed_portal()
    recreate_mlflow_database()
    portal = mlflow = None
    try:
        mlflow = start_mlflow(run.free_port())
        mlflow_port = int(mlflow.args[mlflow.args.index("--port") + 1])
        seed_mlflow(mlflow_port)
        print(f"seeded {MODELS} models x {VERSIONS_PER_MODEL} versions in both")
        portal_port = run.free_port()
        portal = run.start_server(portal_port)
        servers = {
            "portal": Server("portal", portal, portal_port, secret, run.worker_pids(portal.pid)),
            "mlflow": Server("mlflow", mlflow, mlflow_port, "", mlflow_workers(mlflow.pid)),
        }
        figures = rounds(servers, plan, args.rounds)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if portal is not None:
            run.stop_server(portal)
        if mlflow is not None:
            stop_mlflow(mlflow)
        run.flush_broker()
    rows = ratios(figures)
    report(rows)
    write_json(rows, plan, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
