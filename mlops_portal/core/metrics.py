"""The portal's own metrics: what each process counts, and where it keeps the counts.

Two stores, because the processes that count are of two kinds:

- **Web processes** count requests, their latency and their database queries in
  prometheus-client instruments. gunicorn runs several worker processes per node, so these
  use prometheus-client's multiprocess mode when `PROMETHEUS_MULTIPROC_DIR` is set (the
  gunicorn config sets it per instance, `mlops_portal/gunicorn_conf.py`): each process
  writes its own memory-mapped file and a scrape sums them. One scrape target per web node,
  as Prometheus expects.
- **Celery workers and the probe engine** may run on other machines than any web node, and
  no Prometheus scrapes a worker. They add their counts to Redis hashes (one pipelined round
  trip per finished job), which `/metrics` on any web node reads at scrape time: job counts
  by task and outcome, a duration histogram per task, probes sent. Without Redis (the
  filesystem broker of `make run`), the same families are prometheus-client instruments in
  the shared multiprocess folder, which works on one machine.

What the database or the broker knows (deployments by state, open incidents, the outbox,
queue depths, probe lag) is not counted at all: `mlops_portal.overview.metrics` reads it when
Prometheus scrapes.
"""

import logging
import os
import time
from functools import cache

from django.conf import settings
from django.db import connection
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

log = logging.getLogger(__name__)

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

REQUESTS = Counter(
    "portal_http_requests", "HTTP requests answered, by view, method and status.",
    ["view", "method", "status"],
)  # fmt: skip
REQUEST_SECONDS = Histogram(
    "portal_http_request_duration_seconds", "Time to answer a request, by view.", ["view"],
    buckets=REQUEST_BUCKETS,
)  # fmt: skip
DB_QUERIES = Counter(
    "portal_db_queries", "Database queries made while answering requests, by view.", ["view"]
)
# Used only without Redis (see the module's docstring); not in the default registry, so a
# scrape with Redis never shows these families twice.
LOCAL_JOBS = Counter(
    "portal_celery_jobs", "Celery jobs finished, by task and outcome.", ["task", "outcome"],
    registry=None,
)  # fmt: skip
LOCAL_JOB_SECONDS = Histogram(
    "portal_celery_job_duration_seconds", "Time a Celery job ran, by task.", ["task"],
    buckets=JOB_BUCKETS, registry=None,
)  # fmt: skip
LOCAL_PROBES = Counter(
    "portal_probes", "Health-check probes sent by the probe engine.", registry=None
)

# Set on every message when it is published (mlops_portal.celery): the age of a queue's
# oldest waiting message is read from it at scrape time.
SENT_AT_HEADER = "portal_sent_at"

JOBS_KEY = "portal:metrics:jobs"  # "task\toutcome" -> count
JOB_SECONDS_KEY = "portal:metrics:job_seconds"  # "task" -> sum of durations
JOB_BUCKETS_KEY = "portal:metrics:job_buckets"  # "task\t<le>" -> jobs in that bucket only
PROBES_KEY = "portal:metrics:probes"


def scrape_registry() -> CollectorRegistry:
    """A fresh registry holding what this node's processes counted: every process's files
    in multiprocess mode, else this process's own instruments (and, without Redis, its job
    counts); plus the Redis job counts. Callers add the scrape-time collectors."""
    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    client = metrics_redis()
    if directory:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        from prometheus_client import REGISTRY

        registry.register(REGISTRY)
        if client is None:
            for instrument in (LOCAL_JOBS, LOCAL_JOB_SECONDS, LOCAL_PROBES):
                registry.register(instrument)
    if client is not None:
        registry.register(RedisJobCollector(client))
    return registry


# --- web processes ------------------------------------------------------------------------


class RequestMetricsMiddleware:
    """Count each request by view (the URL pattern's name, never the raw path, so scanners
    cannot grow the series), method and status; time it; count its database queries."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        queries = QueryCounter()
        started = time.perf_counter()
        with connection.execute_wrapper(queries):
            response = self.get_response(request)
        seconds = time.perf_counter() - started
        view = view_label(request)
        REQUESTS.labels(view, method_label(request.method), str(response.status_code)).inc()
        REQUEST_SECONDS.labels(view).observe(seconds)
        if queries.count:
            DB_QUERIES.labels(view).inc(queries.count)
        return response


class QueryCounter:
    """A database execute wrapper that counts the statements it sees."""

    def __init__(self):
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def view_label(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return match.view_name or match.route or "unnamed"


KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def method_label(method: str | None) -> str:
    return method if method in KNOWN_METHODS else "other"


# --- workers: jobs and probes -------------------------------------------------------------


@cache
def metrics_redis():
    """The Redis client for job counts, or None when the broker is not Redis."""
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        return None
    import redis

    return redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1, decode_responses=True
    )


def record_job(task: str, outcome: str, seconds: float) -> None:
    """Count one finished Celery job (outcome: success, failure, retry, …) and its duration.
    Never raises: a metrics outage must not fail a job."""
    client = metrics_redis()
    if client is None:
        LOCAL_JOBS.labels(task, outcome).inc()
        LOCAL_JOB_SECONDS.labels(task).observe(seconds)
        return
    bucket = next((str(b) for b in JOB_BUCKETS if seconds <= b), "+Inf")
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hincrby(JOBS_KEY, f"{task}\t{outcome}", 1)
        pipe.hincrbyfloat(JOB_SECONDS_KEY, task, seconds)
        pipe.hincrby(JOB_BUCKETS_KEY, f"{task}\t{bucket}", 1)
        pipe.execute()
    except Exception as exc:  # redis and socket errors alike
        log.warning("metrics: could not count job %s: %s", task, exc)


def record_probes(count: int) -> None:
    """Count `count` probes sent by the probe engine; never raises."""
    if not count:
        return
    client = metrics_redis()
    if client is None:
        LOCAL_PROBES.inc(count)
        return
    try:
        client.incrby(PROBES_KEY, count)
    except Exception as exc:
        log.warning("metrics: could not count %d probes: %s", count, exc)


class RedisJobCollector:
    """Yields the job and probe families from the Redis hashes, at scrape time."""

    def __init__(self, client):
        self.client = client

    def collect(self):
        pipe = self.client.pipeline(transaction=False)
        for key in (JOBS_KEY, JOB_SECONDS_KEY, JOB_BUCKETS_KEY):
            pipe.hgetall(key)
        pipe.get(PROBES_KEY)
        jobs, sums, buckets, probes = pipe.execute()

        counts = CounterMetricFamily(
            "portal_celery_jobs", "Celery jobs finished, by task and outcome.",
            labels=["task", "outcome"],
        )  # fmt: skip
        for field, value in sorted(jobs.items()):
            counts.add_metric(field.split("\t", 1), int(value))
        yield counts

        histogram = HistogramMetricFamily(
            "portal_celery_job_duration_seconds", "Time a Celery job ran, by task.",
            labels=["task"],
        )  # fmt: skip
        per_task: dict[str, dict[str, int]] = {}
        for field, value in buckets.items():
            task, bound = field.split("\t", 1)
            per_task.setdefault(task, {})[bound] = int(value)
        for task, hits in sorted(per_task.items()):
            cumulative, rows = 0, []
            for bound in [*(str(b) for b in JOB_BUCKETS), "+Inf"]:
                cumulative += hits.get(bound, 0)
                rows.append((bound, cumulative))
            histogram.add_metric([task], rows, float(sums.get(task, 0.0)))
        yield histogram

        yield CounterMetricFamily(
            "portal_probes", "Health-check probes sent by the probe engine.", int(probes or 0)
        )
