"""Count the CPU instructions one request costs on MLflow's own server and on the portal,
with valgrind, for the four calls bench/mlflow_peer.py compares.

bench/mlflow_peer.py compares CPU time, whose ratios move by ±20 % from run to run on a
shared machine; instruction counts do not. Run from the repository root (needs Debian's
`valgrind`, PostgreSQL and Redis like `make bench`, and .venv-mlflow):

    .venv/bin/python bench/peer_instructions.py [--requests 50] [--only "get one version"]

It seeds both sides as bench/mlflow_peer.py does (BENCH_PEER_DB through bench/run.py's seed;
BENCH_MLFLOW_DB through a real `mlflow server`, stopped once seeded), then counts as
bench/instructions.py does: each side in-process under cachegrind, with no request and with
N requests after the same warm-up, the difference over N. The MLflow side is its Flask app
(`mlflow.server:app`, what `mlflow server` runs under gunicorn) in .venv-mlflow's python,
with the environment `mlflow server` gave its workers; the portal's is Django's WSGI handler.
Both get the peer's requests (bench/run.py's workloads, as a WSGI environ by
bench/profile_endpoint.py); a creation goes to a new version each time on both. User-space
instructions only: neither side's kernel time for its SQL round trips is in the figures.
"""

import argparse
import concurrent.futures
import functools
import os
import shutil

import instructions
import mlflow_peer
import profile_endpoint

MLFLOW_PYTHON = mlflow_peer.MLFLOW.with_name("python")
SIDES = ("mlflow", "portal /api/v1", "portal MLflow API")


def serve_mlflow_under_count(workload_name: str, count: int) -> None:
    """The measured process, in .venv-mlflow: MLflow's app, warmed up, then `count` requests.
    Imports no Django: nothing at the top of this module or of those it imports does."""
    from mlflow.server import app

    workload = mlflow_peer.mlflow_workloads()[workload_name]
    warm_up = instructions.WARM_UP_REQUESTS
    # The peer sends MLflow the same headers as the portal, with an empty token.
    profile_endpoint.serve(app, workload, "", warm_up)
    profile_endpoint.serve(app, workload, "", count, start=warm_up)


def seed_mlflow() -> dict[str, str]:
    """MLflow's database as the peer seeds it; the variables `mlflow server` set for its
    workers (store URIs, artifact root, its options), for the app run in-process."""
    mlflow_peer.recreate_mlflow_database()
    port = mlflow_peer.run.free_port()
    server = mlflow_peer.start_mlflow(port)
    try:
        mlflow_peer.seed_mlflow(port)
        return mlflow_peer.mlflow_environment(server)
    finally:
        # Not stop_mlflow: the app run in-process keeps the job queue's folder; main()
        # removes it at the end.
        mlflow_peer.run.stop_server(server)


def mlflow_count(workload_name: str, env: dict[str, str], count: int) -> int:
    command = [str(MLFLOW_PYTHON), __file__, "--serve-mlflow", workload_name, str(count)]
    return instructions.counted(f"mlflow {workload_name}", command, env)


def portal_count(workload_name: str, count: int) -> int:
    return instructions.instructions(workload_name, count)


def count_all(names: list[str], requests: int, mlflow_env: dict[str, str], jobs: int) -> dict:
    """Instructions per request, by (side, workload); `jobs` valgrind runs at a time (the
    counts do not depend on the load)."""
    portal_names = {
        "portal /api/v1": {n: w.name for n, w in mlflow_peer.PORTAL_V1.items()},
        "portal MLflow API": {n: w.name for n, w in mlflow_peer.mlflow_workloads().items()},
    }

    def per_request(key: tuple[str, str]) -> float:
        side, name = key
        if side == "mlflow":
            count = functools.partial(mlflow_count, name, mlflow_env)
        else:
            count = functools.partial(portal_count, portal_names[side][name])
        figure = instructions.per_request(count, requests)
        print(f"  {side:<18} {name:<20} {figure / 1e6:6.2f} M", flush=True)
        return figure

    keys = [(side, name) for name in names for side in SIDES]
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        return dict(zip(keys, pool.map(per_request, keys), strict=True))


def report(figures: dict, names: list[str], requests: int) -> None:
    header = (
        f"{'workload':<20} {'mlflow':>8} {'/api/v1':>8} {'ratio':>6} "
        f"{'MLflow API':>10} {'ratio':>6}"
    )
    print(f"\n{header}\n{'-' * len(header)}")
    for name in names:
        theirs, v1, api = (figures[(side, name)] for side in SIDES)
        print(
            f"{name:<20} {theirs / 1e6:>7.2f}M {v1 / 1e6:>7.2f}M {theirs / v1:>5.2f}x "
            f"{api / 1e6:>9.2f}M {theirs / api:>5.2f}x"
        )
    print(
        f"Instructions per request ({requests} requests after {instructions.WARM_UP_REQUESTS} "
        "of warm-up, in-process); ratio = MLflow / portal (higher: portal cheaper)"
    )


def main() -> None:
    names = list(mlflow_peer.PORTAL_V1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--only", action="append", choices=names, help="repeatable")
    parser.add_argument("--jobs", type=int, default=1, help="valgrind runs at a time")
    parser.add_argument("--serve-mlflow", nargs=2, help=argparse.SUPPRESS)  # measured child
    args = parser.parse_args()
    if args.serve_mlflow:
        serve_mlflow_under_count(args.serve_mlflow[0], int(args.serve_mlflow[1]))
        return
    instructions.require_valgrind()
    # The portal's counts run bench/instructions.py on the peer's portal database.
    os.environ["BENCH_DB"] = mlflow_peer.PORTAL_DB
    os.environ["BENCH_BROKER_URL"] = mlflow_peer.PORTAL_BROKER_URL
    mlflow_peer.seed_portal()
    mlflow_env = seed_mlflow()
    print(f"seeded {mlflow_peer.MODELS} models x {mlflow_peer.VERSIONS_PER_MODEL} versions in both")
    names = args.only or names
    try:
        figures = count_all(names, args.requests, {**os.environ, **mlflow_env}, args.jobs)
    finally:
        mlflow_peer.run.flush_broker()  # registrations queued validations no worker runs
        # `mlflow server` leaves its job queue's folder behind.
        if job_queue := mlflow_env.get("_MLFLOW_HUEY_STORAGE_PATH"):
            shutil.rmtree(job_queue, ignore_errors=True)
    report(figures, names, args.requests)


if __name__ == "__main__":
    main()
