"""Time from an engineer's approval to a serving endpoint on the local backend, and from
`mlops deploy --wait` to its exit once the new version serves.

Part of `make bench`. A real Celery worker (queue `deploy`) on Redis runs each deploy job
against a fresh PostgreSQL database `mlops_bench_deploy`; each run requests a deployment,
approves it, and stops the clock when the new model server's /health answers. Runs
alternate two versions, so every run after the first is a blue/green switch. Then the CLI
runs against gunicorn on the same database: `mlops deploy … --target <staging, no approval>
--wait` as a pipeline runs it (polling every second, its default), timed from the command's
start to its exit (0: the new endpoint answers /health).

Then the same approval → serving time on the Ray backend: a real local Ray cluster (one
head node, 2 CPUs, its own ports, tests/deploy/ray_cluster.py) on this host, each run a
Serve rollout of the target's application (new replicas before old ones stop); reported
with its ratio to the local backend's median of the same run.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.run import RESULTS_DIR, VENV_BIN  # noqa: E402

# Overridable so two benchmarks on one machine do not share (and drop) each other's.
DB = os.environ.get("BENCH_DEPLOY_DB", "mlops_bench_deploy")
BROKER_URL = os.environ.get("BENCH_DEPLOY_BROKER_URL", "redis://127.0.0.1:6379/13")
ENV = {
    "DJANGO_SETTINGS_MODULE": "mlops_portal.settings",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "CELERY_BROKER_URL": BROKER_URL,
    "LOG_LEVEL": "WARNING",
}


def prepare(var_dir: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DB}")
    os.environ.update(ENV, VAR_DIR=var_dir)
    subprocess.run(
        [VENV_BIN / "python", "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True
    )
    import django

    django.setup()


def seed():
    """Two ready iris versions, a local production target, a requester and an approver."""
    from django.contrib.auth.models import Group, User
    from django.core.files.base import ContentFile

    from deployments import services
    from deployments.demo import train_iris

    alice = User.objects.create_user("alice", email="alice@example.com")
    alice.groups.add(Group.objects.get(name="data_scientist"))
    bob = User.objects.create_user("bob", email="bob@example.com")
    bob.groups.add(Group.objects.get(name="mlops_engineer"))
    model = services.create_model(alice, name="iris")
    versions = []
    for c in (0.5, 2.0):
        artifact, metrics, params, sample = train_iris(c=c)
        version = services.register_version(
            alice, model.name, artifact=ContentFile(artifact, name="m.joblib"),
            metrics=metrics, params=params, sample_input=sample,
        )  # fmt: skip
        versions.append(services.validate_version(version.pk))
    target = services.create_target(bob, name="iris-production", environment="production")
    return alice, bob, versions, target


def start_worker(log_path: Path) -> subprocess.Popen:
    from mlops_portal.celery import app

    node = f"bench-deploy-{os.getpid()}@localhost"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [VENV_BIN / "celery", "-A", "mlops_portal", "worker", "--queues", "deploy",
             "--concurrency", "1", "--hostname", node, "--without-gossip", "--without-mingle"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while not app.control.ping(destination=[node], timeout=0.5):
        if worker.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"The Celery worker did not start:\n{log_path.read_text()[-2000:]}")
    return worker


def one_run(alice, bob, version, target) -> float:
    """Seconds from approve() returning to the new endpoint answering /health."""
    import httpx

    from deployments import services
    from deployments.models import Deployment

    deployment = services.request_deployment(alice, version=version, target=target, reason="bench")
    started = time.perf_counter()
    services.approve_deployment(bob, deployment)
    while True:
        current = Deployment.objects.get(pk=deployment.pk)
        if current.state == "failed":
            sys.exit(f"Deploy failed: {current.failure_reason}")
        if current.state == "succeeded":
            try:
                if httpx.get(f"{current.endpoint}/health", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
        time.sleep(0.02)


def start_web(var_dir: str) -> tuple[subprocess.Popen, str]:
    """gunicorn (1 worker) on a free port of 127.0.0.1, on the bench database."""
    import httpx

    from bench.run import free_port

    port = free_port()
    env = os.environ | ENV | WEB_ENV | {"VAR_DIR": var_dir}
    with open(RESULTS_DIR / "deploy-web.log", "w") as log:
        web = subprocess.Popen(
            [VENV_BIN / "gunicorn", "mlops_portal.wsgi", "--workers", "1",
             "--bind", f"127.0.0.1:{port}", "--no-control-socket"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return web, url
        except httpx.HTTPError:
            time.sleep(0.2)
    sys.exit(f"gunicorn did not start; see {RESULTS_DIR / 'deploy-web.log'}")


WEB_ENV = {
    "SECURE_SSL_REDIRECT": "false",
    "SECURE_HSTS_SECONDS": "0",
    "STATICFILES_STORAGE": "django.contrib.staticfiles.storage.StaticFilesStorage",
}


def one_cli_run(url: str, secret: str, version, target) -> float:
    """Seconds from starting `mlops deploy --wait` to its exit, checked serving."""
    import httpx

    started = time.perf_counter()
    done = subprocess.run(
        [VENV_BIN / "python", "-P", "-m", "mlops_cli", "deploy", version.model.name,
         str(version.number), "--target", target.name, "--reason", "bench", "--wait", "--json"],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "MLOPS_URL": url,
             "MLOPS_TOKEN": secret},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"mlops deploy exited {done.returncode}:\n{done.stderr[-2000:]}")
    endpoint = json.loads(done.stdout)["endpoint"]
    if httpx.get(f"{endpoint}/health", timeout=2).status_code != 200:
        sys.exit(f"mlops deploy exited 0 but {endpoint} does not serve")
    return elapsed


def cli_runs(var_dir, alice, bob, versions, runs) -> list[float]:
    from deployments import services
    from mlops_portal.core import tokens

    staging = services.create_target(bob, name="iris-staging", environment="staging")
    _, secret = tokens.create_token(alice, "bench-cli")
    web, url = start_web(var_dir)
    try:
        return [one_cli_run(url, secret, versions[i % 2], staging) for i in range(runs)]
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=20)


def ray_runs(alice, bob, versions, runs) -> list[float]:
    """Approval → serving on a `ray` target of a local Ray cluster started for the runs."""
    from deployments import services
    from tests.deploy import ray_cluster

    cluster = ray_cluster.start(num_cpus=2)
    try:
        target = services.create_target(
            bob, name="iris-ray", environment="production", backend="ray",
            backend_settings={
                "dashboard_url": cluster.dashboard_url, "num_cpus": 0.25,
                "http_host": "127.0.0.1", "http_port": cluster.serve_port,
            },
        )  # fmt: skip
        return [one_run(alice, bob, versions[i % 2], target) for i in range(runs)]
    finally:
        ray_cluster.stop(cluster)


def stop_everything(worker) -> None:
    from deployments.backends.local import is_model_server, terminate
    from deployments.models import Deployment

    for state in Deployment.objects.values_list("backend_state", flat=True):
        if state.get("pid") and is_model_server(state["pid"]):
            terminate(state["pid"])
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
    import redis

    redis.Redis.from_url(BROKER_URL).flushdb()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--cli-runs", type=int, default=5, help="`mlops deploy --wait` runs")
    parser.add_argument("--ray-runs", type=int, default=5, help="runs on the Ray backend (0: none)")
    options = parser.parse_args()
    runs = options.runs
    RESULTS_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlops-bench-deploy-") as var_dir:
        prepare(var_dir)
        alice, bob, versions, target = seed()
        worker = start_worker(RESULTS_DIR / "deploy-worker.log")
        try:
            seconds = [one_run(alice, bob, versions[i % 2], target) for i in range(runs)]
            cli_seconds = cli_runs(var_dir, alice, bob, versions, options.cli_runs)
            ray_seconds = (
                ray_runs(alice, bob, versions, options.ray_runs) if options.ray_runs else []
            )
        finally:
            stop_everything(worker)
    median = statistics.median(seconds)
    print(f"\napproval → serving endpoint (local backend), {runs} runs:")
    print("  " + "  ".join(f"{s:.2f}s" for s in seconds))
    print(f"  median {median:.2f} s, min {min(seconds):.2f} s, max {max(seconds):.2f} s")
    cli_median = statistics.median(cli_seconds)
    print(f"`mlops deploy --wait` → exit 0, serving (local backend), {len(cli_seconds)} runs:")
    print("  " + "  ".join(f"{s:.2f}s" for s in cli_seconds))
    print(
        f"  median {cli_median:.2f} s, min {min(cli_seconds):.2f} s, max {max(cli_seconds):.2f} s"
    )
    results = {}
    if ray_seconds:
        ray_median = statistics.median(ray_seconds)
        print(f"approval → serving endpoint (Ray backend, local cluster), {len(ray_seconds)} runs:")
        print("  " + "  ".join(f"{s:.2f}s" for s in ray_seconds))
        print(f"  median {ray_median:.2f} s ({ray_median / median:.1f} times the local backend's)")
        results = {"ray_runs": ray_seconds, "ray_median_s": ray_median,
                   "ray_to_local_median_ratio": ray_median / median}  # fmt: skip
    (RESULTS_DIR / "deploy.json").write_text(
        json.dumps(
            {
                "runs": seconds,
                "median_s": median,
                "cli_deploy_wait_runs": cli_seconds,
                "cli_deploy_wait_median_s": cli_median,
                **results,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
