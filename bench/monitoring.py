"""Monitoring workloads of `make bench`:

1. the probe engine end to end (claim due checks, probe them concurrently, write all
   results and states): N = 1,000 and 5,000 checks against local servers on loopback;
2. a 30-day chart for a check with one result every 10 s (259,200 raw results), read from
   hour roll-ups and rendered with Plotly;
3. the serving-metrics scrape job over 200 live deployments (local stand-ins serving a
   model server's metrics text): worker CPU per round (one round a minute);
4. `/predict` p95 with the prediction log on (10 % and 100 %) and off (bench/predict_logging.py).

4. the drift job for one live version: 50 features (40 numeric, 10 categorical) over
   100,000 logged rows (read, parse, PSI + KS / chi-squared, store).

Targets: at least 2,000 probes/s per worker process, the 30-day chart under 150 ms, a
scrape round under 10 s of worker CPU (`--only scrape` runs just that one), drift under
5 s (`--only drift` runs just that one, in its own database `mlops_bench_drift`), and
/predict's p95 with logging on within 5 % of off (`--only predict-logging`).
Runs on a fresh PostgreSQL database `mlops_bench_monitor`; results in
bench-results/monitoring.json.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.probe_servers import start_probe_servers  # noqa: E402
from bench.run import RESULTS_DIR, VENV_BIN  # noqa: E402

DB = os.environ.get("BENCH_MONITOR_DB", "mlops_bench_monitor")
if sys.argv[1:] == ["--only", "drift"]:
    DB = os.environ.get("BENCH_DRIFT_DB", "mlops_bench_drift")
ENV = {
    "DJANGO_SETTINGS_MODULE": "mlops_portal.settings",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/12",
    "LOG_LEVEL": "WARNING",
}
PROBE_TARGET_PER_S = 2000
CHART_TARGET_MS = 150
THIRTY_DAYS_OF_RESULTS = 30 * 24 * 360
SCRAPE_SERVERS = 200
SCRAPE_CPU_TARGET_S = 10.0
DRIFT_FEATURES, DRIFT_CATEGORICAL, DRIFT_ROWS = 50, 10, 100_000
DRIFT_TARGET_S = 5.0


def prepare() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DB}")
    os.environ.update(ENV)
    subprocess.run(
        [VENV_BIN / "python", "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True
    )
    import django

    django.setup()


def probe_throughput(base_urls: list[str], n: int) -> dict:
    """Create n due checks over the servers, then time one dispatcher run (best of 2)."""
    from django.utils import timezone

    from monitoring.models import HealthCheck, ProbeResult
    from monitoring.services import checks

    HealthCheck.objects.all().delete()
    now = timezone.now()
    HealthCheck.objects.bulk_create(
        HealthCheck(
            name=f"bench {i}", url=f"{base_urls[i % len(base_urls)]}/health?i={i}",
            expected_statuses=[200], interval_seconds=10, timeout_seconds=5,
            next_due_at=now,
        )
        for i in range(n)
    )  # fmt: skip
    runs = []
    for round_number in range(2):
        HealthCheck.objects.update(next_due_at=timezone.now())
        before = ProbeResult.objects.count()
        started = time.perf_counter()
        probed = checks.run_probes()
        seconds = time.perf_counter() - started
        written = ProbeResult.objects.count() - before
        failed = HealthCheck.objects.exclude(state="up").count()
        runs.append({"round": round_number + 1, "probed": probed, "written": written,
                     "failed": failed, "seconds": round(seconds, 3),
                     "probes_per_s": round(probed / seconds)})  # fmt: skip
    best = max(runs, key=lambda r: r["probes_per_s"])
    passed = best["probes_per_s"] >= PROBE_TARGET_PER_S and best["failed"] == 0
    return {"n": n, "runs": runs, "probes_per_s": best["probes_per_s"], "passed": passed}


def thirty_day_chart() -> dict:
    """Seed 30 days of 10-second results for one check, roll them up, time the chart."""
    from django.db import connection
    from django.utils import timezone

    from monitoring import charts, series
    from monitoring.models import HealthCheck
    from monitoring.services import rollups

    check = HealthCheck.objects.create(
        name="thirty days", url="http://127.0.0.1:9/health", expected_statuses=[200]
    )
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO monitoring_proberesult (health_check_id, at, ok, status_code, latency_ms,"
            " error) SELECT %s, %s - i * interval '10 seconds', i %% 97 <> 0, 200,"
            " 10 + (i %% 50), '' FROM generate_series(1, %s) AS i",
            [check.pk, now, THIRTY_DAYS_OF_RESULTS],
        )
    started = time.perf_counter()
    rollups.roll_up_minutes(now - timedelta(days=31), now)
    rollups.roll_up_hours(now - timedelta(days=31), now)
    rollup_seconds = time.perf_counter() - started
    timings = []
    for _ in range(7):
        started = time.perf_counter()
        points = series.points(check.pk, now - series.RANGES["30d"], now)
        html = charts.check_chart(points, "30 days")
        timings.append((time.perf_counter() - started) * 1000)
    median = statistics.median(timings)
    return {"raw_results": THIRTY_DAYS_OF_RESULTS, "points": len(points),
            "html_bytes": len(html), "rollup_seconds": round(rollup_seconds, 2),
            "chart_ms_median": round(median, 1), "chart_ms_runs": [round(t, 1) for t in timings],
            "passed": median < CHART_TARGET_MS}  # fmt: skip


def live_deployments(base_urls: list[str]) -> None:
    """One live deployment per stand-in server (rows only: nothing is deployed)."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from deployments.models import Deployment, ModelVersion, RegisteredModel, Target

    user, _ = get_user_model().objects.get_or_create(username="bench-scrape")
    model = RegisteredModel.objects.create(name="bench-scrape", owner=user)
    now = timezone.now()
    versions = ModelVersion.objects.bulk_create(
        ModelVersion(model=model, number=i + 1, status="ready", registered_by=user,
                     artifact_uri="s3://bench/model.joblib")
        for i in range(len(base_urls))
    )  # fmt: skip
    targets = Target.objects.bulk_create(
        Target(name=f"bench-scrape-{i}", environment="staging", created_by=user)
        for i in range(len(base_urls))
    )  # fmt: skip
    Deployment.objects.bulk_create(
        Deployment(target=target, version=version, state="succeeded", requested_by=user,
                   endpoint=url, finished_at=now)
        for target, version, url in zip(targets, versions, base_urls, strict=True)
    )  # fmt: skip


def scrape_rounds(base_urls: list[str], rounds: int = 3) -> dict:
    """Time `rounds` scrape rounds over every live deployment: wall time and the CPU of
    this process (the worker's share; PostgreSQL's own CPU is not in it)."""
    from monitoring.models import ServingRollup
    from monitoring.services import serving

    live_deployments(base_urls)
    runs = []
    for _ in range(rounds):
        started, cpu = time.perf_counter(), time.process_time()
        result = serving.scrape_live_deployments()
        runs.append({**result, "seconds": round(time.perf_counter() - started, 3),
                     "cpu_seconds": round(time.process_time() - cpu, 3)})  # fmt: skip
    worst = max(r["cpu_seconds"] for r in runs)
    passed = worst < SCRAPE_CPU_TARGET_S and all(not r["failed"] for r in runs)
    return {"deployments": len(base_urls), "runs": runs, "worst_cpu_seconds": worst,
            "rollups": ServingRollup.objects.count(), "passed": passed}  # fmt: skip


def print_scrape(scrape: dict) -> None:
    verdict = "PASS" if scrape["passed"] else "FAIL"
    runs = ", ".join(f"{r['cpu_seconds']} s CPU / {r['seconds']} s" for r in scrape["runs"])
    print(f"scrape job, {scrape['deployments']} live servers: worst round "
          f"{scrape['worst_cpu_seconds']} s of worker CPU (rounds: {runs}; failed: "
          f"{[r['failed'] for r in scrape['runs']]}), target < {SCRAPE_CPU_TARGET_S} s a "
          f"minute: {verdict}")  # fmt: skip


def predict_logging() -> dict:
    from bench.predict_logging import print_result, run

    result = run()
    print_result(result)
    (RESULTS_DIR / "predict-logging.json").write_text(json.dumps(result, indent=1))
    return result


def drift_rows(rng, n: int):
    """n rows: DRIFT_FEATURES - DRIFT_CATEGORICAL normal numbers, then category codes."""
    numeric = rng.normal(0, 1, (n, DRIFT_FEATURES - DRIFT_CATEGORICAL)).round(4)
    codes = rng.integers(0, 8, (n, DRIFT_CATEGORICAL))
    return [
        [*values, *(f"c{code}" for code in row_codes)]
        for values, row_codes in zip(numeric.tolist(), codes.tolist(), strict=True)
    ]


def drift_job() -> dict:
    """One live version with a 10,000-row reference and DRIFT_ROWS logged rows in its last
    hour (loaded with COPY); time the drift job on it (3 runs, each a fresh window end)."""
    import numpy
    import orjson
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from deployments.models import Deployment, ModelVersion, RegisteredModel, Target
    from monitoring import drift as arithmetic
    from monitoring.models import DriftReference, DriftScore, LoggedPrediction
    from monitoring.services import drift

    rng = numpy.random.default_rng(15)
    user, _ = get_user_model().objects.get_or_create(username="bench-drift")
    model = RegisteredModel.objects.create(name="bench-drift", owner=user)
    version = ModelVersion.objects.create(
        model=model, number=1, status="ready", registered_by=user, artifact_uri="s3://b/m"
    )
    target = Target.objects.create(name="bench-drift", environment="staging", created_by=user)
    deployment = Deployment.objects.create(
        target=target, version=version, state="succeeded", requested_by=user,
        finished_at=timezone.now(),
    )  # fmt: skip
    reference = drift_rows(rng, 10_000)
    started = time.perf_counter()
    columns = list(zip(*reference, strict=True))
    summaries = [arithmetic.summarise(f"f{i}", column) for i, column in enumerate(columns)]
    summarise_s = time.perf_counter() - started
    DriftReference.objects.create(version=version, source="file", rows=len(reference),
                                  features=summaries)  # fmt: skip
    now = timezone.now().replace(second=0, microsecond=0)
    table = LoggedPrediction._meta.db_table
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(
            f"COPY {table} (deployment_id, version_id, prediction_id, row, logged_at, features, "
            "prediction) FROM STDIN"
        ) as copy,
    ):
        for i, row in enumerate(drift_rows(rng, DRIFT_ROWS)):
            at = now - timedelta(seconds=3599 * (i + 1) / DRIFT_ROWS)
            copy.write_row((deployment.pk, version.pk, f"p{i}", 0, at,
                            orjson.dumps(row).decode(), str(i % 3)))  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    runs = []
    for _ in range(3):
        DriftScore.objects.all().delete()
        started, cpu, db_cpu = time.perf_counter(), time.process_time(), process_cpu(backend)
        written = drift.score_version(version.pk, now)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        db_cpu = process_cpu(backend) - db_cpu
        runs.append({"seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
                     "db_cpu_seconds": round(db_cpu, 3),
                     "total_cpu_seconds": round(cpu + db_cpu, 3), "scores": written})  # fmt: skip
        assert written, "the window was not scored"
    best = min(r["seconds"] for r in runs)
    best_cpu = min(r["total_cpu_seconds"] for r in runs)
    return {"features": DRIFT_FEATURES, "rows": DRIFT_ROWS, "runs": runs, "best_seconds": best,
            "best_total_cpu_seconds": best_cpu, "load_average": os.getloadavg()[0],
            "reference_summary_seconds": round(summarise_s, 3),
            "passed": best < DRIFT_TARGET_S, "cpu_passed": best_cpu < DRIFT_TARGET_S}  # fmt: skip


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a local process (the PostgreSQL backend serving this
    connection), from /proc: the database's share of the job, which a wall clock on a
    shared machine blurs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def print_drift(result: dict) -> None:
    runs = ", ".join(f"{r['seconds']} s ({r['cpu_seconds']} s worker + {r['db_cpu_seconds']} s "
                     "PostgreSQL CPU)" for r in result["runs"])  # fmt: skip
    print(f"drift job, {result['features']} features x {result['rows']} logged rows: best "
          f"{result['best_seconds']} s wall, {result['best_total_cpu_seconds']} s CPU (runs: "
          f"{runs}; load average {result['load_average']:.1f}), target < {DRIFT_TARGET_S} s: "
          f"wall {'PASS' if result['passed'] else 'FAIL'}, CPU "
          f"{'PASS' if result['cpu_passed'] else 'FAIL'}; summarising a 10,000-row reference "
          f"took {result['reference_summary_seconds']} s")  # fmt: skip


def main() -> int:
    RESULTS_DIR.mkdir(exist_ok=True)
    if sys.argv[1:] == ["--only", "predict-logging"]:
        predict_logging()
        return 0
    if sys.argv[1:] == ["--only", "drift"]:
        prepare()
        result = drift_job()
        print_drift(result)
        (RESULTS_DIR / "monitoring-drift.json").write_text(json.dumps(result, indent=1))
        return 0
    only_scrape = sys.argv[1:] == ["--only", "scrape"]
    prepare()
    base_urls, stop = start_probe_servers(count=SCRAPE_SERVERS)
    try:
        scrape = scrape_rounds(base_urls)
        probes = [] if only_scrape else [probe_throughput(base_urls[:4], n) for n in (1000, 5000)]
    finally:
        stop()
    print_scrape(scrape)
    if only_scrape:
        (RESULTS_DIR / "monitoring-scrape.json").write_text(json.dumps(scrape, indent=1))
        return 0
    chart = thirty_day_chart()
    drifted = drift_job()
    print_drift(drifted)
    print("\nprobe engine, end to end (claim, probe, write results and states), one process:")
    for result in probes:
        verdict = "PASS" if result["passed"] else "FAIL"
        rounds = ", ".join(f"{r['probes_per_s']}/s" for r in result["runs"])
        print(f"  N={result['n']:>5}: {result['probes_per_s']:>5} probes/s (rounds: {rounds})"
              f"  target >= {PROBE_TARGET_PER_S}: {verdict}")  # fmt: skip
    print(f"30-day chart ({chart['raw_results']} raw results → {chart['points']} hourly points):"
          f" {chart['chart_ms_median']} ms median, target < {CHART_TARGET_MS} ms:"
          f" {'PASS' if chart['passed'] else 'FAIL'} (roll-up of 30 days took"
          f" {chart['rollup_seconds']} s)")  # fmt: skip
    (RESULTS_DIR / "monitoring.json").write_text(
        json.dumps({"probes": probes, "chart": chart, "scrape": scrape, "drift": drifted}, indent=1)
    )
    predict_logging()
    return 0


if __name__ == "__main__":
    sys.exit(main())
