"""Count the CPU instructions one request of a workload costs, with valgrind.

CPU time per request on a shared VM drifts by a factor of two from one day to the next (the
floor view measured 0.47 ms one day and 1.22 ms the next); the instruction count does not,
so it shows whether a change made a request cheaper. Run after `bench/run.py`, which leaves
the seeded mlops_bench database (BENCH_DB) behind; needs Debian's `valgrind`:

    .venv/bin/python bench/instructions.py "register by URI" floor [--requests 100]

Each workload is served in-process (like bench/profile_endpoint.py) twice under cachegrind,
with no request and with N requests after the same warm-up; the difference over N is the
cost of one request, start-up excluded. It counts user-space instructions only: the kernel's
share of each SQL or Redis round trip (about as much CPU again here) is not in the figure.
"""

import argparse
import functools
import re
import shutil
import subprocess
import sys
from collections.abc import Callable

import profile_endpoint
import run

WARM_UP_REQUESTS = 20


def serve_under_count(workload: run.Workload, count: int) -> None:
    """The measured process: start Django, warm up, then serve `count` requests."""
    handler, secret = profile_endpoint.start_warm(workload, WARM_UP_REQUESTS)
    # Registrations go to other models than the warm-up's, as in the benchmark.
    profile_endpoint.serve(handler, workload, secret, count, start=WARM_UP_REQUESTS)


def instructions(workload_name: str, count: int) -> int:
    command = [sys.executable, __file__, workload_name, "--serve", str(count)]
    return counted(workload_name, command)


def counted(label: str, command: list[str], env: dict[str, str] | None = None) -> int:
    """The user-space instructions `command` runs, counted by cachegrind."""
    command = [
        "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
        *command,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    match = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    if result.returncode != 0 or match is None:
        sys.exit(f"{label}: valgrind run failed:\n{result.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def per_request(count: Callable[[int], int], requests: int) -> float:
    """Instructions of one request: runs with `requests` and with no request, differenced."""
    return (count(requests) - count(0)) / requests


def require_valgrind() -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install -y valgrind")


def main() -> None:
    names = [w.name for w in run.WORKLOADS + run.MLFLOW_API_WORKLOADS]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="+", choices=names, metavar="WORKLOAD")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the measured child
    args = parser.parse_args()
    if args.serve is not None:
        serve_under_count(run.workload_named(args.workloads[0]), args.serve)
        return
    require_valgrind()
    try:
        for name in args.workloads:
            one = per_request(functools.partial(instructions, name), args.requests)
            print(f"{name:<20} {one / 1e6:6.2f} M instructions per request", flush=True)
    finally:
        run.flush_broker()  # registrations queued validations that no worker will run


if __name__ == "__main__":
    main()
