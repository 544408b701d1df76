"""The canary step overhead on the local backend: what a step job costs beyond its hold, and
what the weighted proxy adds to each request.

Part of `make bench`. In this process, on a fresh PostgreSQL database `mlops_bench_canary`:
the deploy job puts v1 live, then starts v2 as a canary with many small steps (real model
servers and the real proxy). Each step job (`services.canary.run_step`, called directly,
its hold skipped) reads both servers' /metrics, judges, moves the proxy's weight and
schedules the next step; it is timed (wall and CPU) beside its peer measured in the same
run, one bare scrape (GET /metrics + parse) of one server. Then /predict round trips,
sequential on keep-alive connections, in alternating rounds: straight to the stable server
and through the proxy; the ratio of their medians is the proxy's overhead.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.deploy_latency import ENV as DEPLOY_ENV  # noqa: E402
from bench.run import RESULTS_DIR, VENV_BIN  # noqa: E402

DB = os.environ.get("BENCH_CANARY_DB", "mlops_bench_canary")
ENV = {
    **DEPLOY_ENV,
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "CELERY_BROKER_URL": os.environ.get("BENCH_CANARY_BROKER_URL", "redis://127.0.0.1:6379/13"),
    "CANARY_MIN_REQUESTS": "10",
}
ROWS = [[5.1, 3.5, 1.4, 0.2]]


def prepare(var_dir: str) -> None:
    import subprocess

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


def start_canary(steps: list[int]):
    """v1 live, v2 a canary at steps[0]; return (stable, canary) deployments."""
    from bench.deploy_latency import seed
    from deployments import services
    from deployments.models import Target

    alice, _, versions, target = seed()
    Target.objects.filter(pk=target.pk).update(requires_approval=False)
    target.refresh_from_db()
    stable = services.request_deployment(alice, version=versions[0], target=target, reason="v1")
    assert services.run_deployment(stable.pk) == "succeeded"
    canary = services.request_deployment(
        alice, version=versions[1], target=target, reason="bench", strategy="canary",
        canary_steps=steps, canary_step_seconds=3600,
    )  # fmt: skip
    assert services.run_deployment(canary.pk) == "running"
    stable.refresh_from_db()
    canary.refresh_from_db()
    return stable, canary


def time_steps(canary, count: int, client) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of `count` step jobs, each after 40 requests through the proxy."""
    from deployments.services import canary as canary_service

    walls, cpus = [], []
    for step in range(count):
        for _ in range(40):
            client.post(f"{canary.endpoint}/predict", json={"instances": ROWS})
        wall, cpu = time.perf_counter(), time.process_time()
        assert canary_service.run_step(canary.pk, step) == "running"
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def time_scrapes(url: str, count: int) -> list[float]:
    from deployments import canary_analysis

    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        canary_analysis.scrape(url)
        seconds.append(time.perf_counter() - started)
    return seconds


def time_predicts(client, url: str, count: int) -> list[float]:
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        client.post(f"{url}/predict", json={"instances": ROWS}).raise_for_status()
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> int:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15, help="step jobs timed")
    parser.add_argument("--rounds", type=int, default=5, help="alternating /predict rounds")
    parser.add_argument("--requests", type=int, default=200, help="requests per round and side")
    options = parser.parse_args()
    RESULTS_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlops-bench-canary-") as var_dir:
        prepare(var_dir)
        from deployments.backends import backend_for

        steps = [5 * n for n in range(1, options.steps + 2)]  # the last one is never reached
        stable, canary = start_canary(steps)
        try:
            with httpx.Client(timeout=10) as client:
                walls, cpus = time_steps(canary, options.steps, client)
                scrapes = time_scrapes(f"{stable.endpoint}/metrics", options.steps * 4)
                direct, proxied = [], []
                for _ in range(options.rounds):
                    direct += time_predicts(client, stable.endpoint, options.requests)
                    proxied += time_predicts(client, canary.endpoint, options.requests)
        finally:
            for deployment in (canary, stable):
                deployment.refresh_from_db()
                backend_for(deployment.target).stop(deployment)
    step_ms, cpu_ms = statistics.median(walls) * 1000, statistics.median(cpus) * 1000
    scrape_ms = statistics.median(scrapes) * 1000
    direct_ms, proxied_ms = statistics.median(direct) * 1000, statistics.median(proxied) * 1000
    print(f"\ncanary step job (analysis, new weight, next step scheduled), {len(walls)} runs:")
    print(f"  median {step_ms:.1f} ms wall, {cpu_ms:.1f} ms CPU in the job's process; "
          f"{step_ms / scrape_ms:.1f} times one bare scrape ({scrape_ms:.2f} ms)")  # fmt: skip
    print(f"/predict through the canary proxy: median {proxied_ms:.2f} ms, direct "
          f"{direct_ms:.2f} ms ({proxied_ms / direct_ms:.2f} times)")  # fmt: skip
    results = {
        "step_wall_ms": walls and [w * 1000 for w in walls], "step_median_ms": step_ms,
        "step_cpu_median_ms": cpu_ms, "scrape_median_ms": scrape_ms,
        "step_to_scrape_ratio": step_ms / scrape_ms, "predict_direct_median_ms": direct_ms,
        "predict_proxied_median_ms": proxied_ms, "proxy_ratio": proxied_ms / direct_ms,
    }  # fmt: skip
    (RESULTS_DIR / "canary.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
