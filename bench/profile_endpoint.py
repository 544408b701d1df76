"""Profile one benchmark workload in-process, to see where its server CPU goes.

Run after `bench/run.py` (which leaves the seeded mlops_bench database, or BENCH_DB, behind):

    .venv/bin/python bench/profile_endpoint.py "get one version" [--sort tottime] [--queries]

Requests go through Django's real WSGI handler (the same middleware and views gunicorn
runs), without a socket. It prints the plain CPU time per request first, then a cProfile
timed with CPU time, so waiting for PostgreSQL does not count (as in the benchmark).
"""

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from wsgiref.util import setup_testing_defaults

import run


def wsgi_environ(workload: run.Workload, i: int, secret: str) -> dict:
    path, _, query = workload.path_fn(i).partition("?")
    body = json.dumps(workload.body_fn(i)).encode() if workload.body_fn else b""
    environ = {
        "REQUEST_METHOD": workload.method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    if workload.auth:
        environ["HTTP_AUTHORIZATION"] = f"Token {secret}"
    setup_testing_defaults(environ)
    return environ


def serve(handler, workload: run.Workload, secret: str, count: int, start: int = 0) -> None:
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(int(status.split()[0]))

    for i in range(start, start + count):
        response = handler(wsgi_environ(workload, i, secret), start_response)
        b"".join(response)
        response.close()  # sends request_finished, like gunicorn does
    unexpected = [s for s in statuses if s != workload.expected_status]
    if unexpected:
        sys.exit(f"{workload.name}: {len(unexpected)} unexpected statuses, e.g. {unexpected[0]}")


def start_warm(workload: run.Workload, warm_up: int):
    """Django's WSGI handler on the seeded database and a fresh token's secret, after
    `warm_up` requests (imports, URL resolvers, the connection)."""
    run.setup_django()
    from django.contrib.auth.models import User
    from django.core.handlers.wsgi import WSGIHandler

    from mlops_portal.core.tokens import create_token

    _token, secret = create_token(User.objects.get(username="bench"), f"profile-{time.time()}")
    handler = WSGIHandler()
    serve(handler, workload, secret, warm_up)
    return handler, secret


def print_queries(handler, workload: run.Workload, secret: str, i: int) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        serve(handler, workload, secret, 1, start=i)
    for number, query in enumerate(captured.captured_queries, 1):
        print(f"{number:>3}. {query['sql']}\n")


def main() -> None:
    names = [w.name for w in run.WORKLOADS + run.MLFLOW_API_WORKLOADS]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=names)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--sort", default="cumulative", help="pstats sort key")
    parser.add_argument("--lines", type=int, default=40)
    parser.add_argument("--queries", action="store_true", help="print one request's SQL")
    args = parser.parse_args()
    workload = run.workload_named(args.workload)

    handler, secret = start_warm(workload, 50)

    started = time.process_time()
    serve(handler, workload, secret, args.requests, start=50)
    cpu_ms = 1000 * (time.process_time() - started) / args.requests
    print(f"{workload.name}: {cpu_ms:.2f} ms CPU per request in-process, without profiler\n")
    if args.queries:
        print_queries(handler, workload, secret, 50 + args.requests)

    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(serve, handler, workload, secret, args.requests, 50 + args.requests)
    pstats.Stats(profiler).strip_dirs().sort_stats(args.sort).print_stats(args.lines)


if __name__ == "__main__":
    main()
