#!/usr/bin/env python
"""`make chaos`: attack a live portal stack and print what held.

Starts its own stack on 127.0.0.1 (a private Redis, a fresh PostgreSQL database on the
server of DATABASE_URL, gunicorn, Celery workers, beat and the outbox relay when main has
one), runs the checks, stops every process it started by pid, drops the database, and
prints a table: check, runs, failures, lost, duplicated, 5xx. Exits 1 if any is not 0.

    .venv/bin/python scripts/chaos.py            # the long run (~15-20 min on 2 cores)
    .venv/bin/python scripts/chaos.py --quick    # a few runs of each (~2 min)
    .venv/bin/python scripts/chaos.py --only kill,redis --deploys 5
"""

import argparse
import random
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # deployments.demo

import chaos_checks as checks
from chaos_stack import Stack, log

CHECKS = ["kill", "redis", "approvals", "malformed", "schemathesis"]
LONG = {"deploys": 20, "registrations": 100, "parallel": 100, "malformed": 0, "examples": 100}
QUICK = {"deploys": 2, "registrations": 12, "parallel": 8, "malformed": 1000, "examples": 3}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few runs of each check")
    parser.add_argument("--only", help=f"comma-separated checks to run, of {','.join(CHECKS)}")
    parser.add_argument("--deploys", type=int, help="deploys with a kill -9 (long: 20)")
    parser.add_argument("--registrations", type=int, help="registrations (long: 100)")
    parser.add_argument("--parallel", type=int, help="parallel requests (long: 100)")
    parser.add_argument("--malformed", type=int, help="malformed requests, 0 = all (long: 0)")
    parser.add_argument("--examples", type=int, help="schemathesis examples per operation")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds Redis stays down")
    parser.add_argument("--seed", type=int, default=20261201, help="random seed (kills, fuzz)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the run folder")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else LONG
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.only = args.only.split(",") if args.only else CHECKS
    unknown = set(args.only) - set(CHECKS)
    if unknown:
        parser.error(f"unknown checks: {', '.join(sorted(unknown))}")
    return args


def run_checks(stack: Stack, args, results: list) -> None:
    """Run the chosen checks in order, appending each result to `results` as it ends."""
    fixture = checks.prepare(stack)
    rng = random.Random(args.seed)
    plan = {
        "kill": lambda: checks.check_killed_deploys(fixture, args.deploys, rng),
        "redis": lambda: checks.check_redis_outage(fixture, args.registrations, args.outage),
        "approvals": lambda: checks.check_parallel_approvals(fixture, args.parallel),
        "malformed": lambda: checks.check_malformed_input(fixture, args.malformed),
        "schemathesis": lambda: checks.check_schemathesis(
            fixture, args.examples, args.seed, args.quick
        ),
    }
    for name in CHECKS:
        if name in args.only:
            results.append(run_one(name, plan[name], stack))


def run_one(name: str, check, stack: Stack) -> "checks.Result":
    """Run one check; a crash is a failure of that check, and the next ones still run. A
    service of the stack that died during the check is a failure too (its log's tail)."""
    log(f"=== {name}")
    started = time.monotonic()
    try:
        result = check()
    except Exception as exc:
        traceback.print_exc()
        result = checks.Result(checks.TITLES[name])
        result.fail(f"the check crashed: {exc!r}")
    for process in stack.processes.values():
        if not process.alive():
            result.fail(f"{process.name} exited during the check: {process.tail(5)}")
            process.start()  # the next checks need it
    log(f"=== {name} done in {time.monotonic() - started:.0f} s")
    return result


def print_table(results: list) -> None:
    header = ("check", "runs", "failures", "lost", "duplicated", "5xx")
    rows = [(r.check, r.runs, r.failures, r.lost, r.duplicated, r.server_errors) for r in results]
    width = max([len(header[0])] + [len(row[0]) for row in rows])
    line = f"| {{:<{width}}} | {{:>6}} | {{:>8}} | {{:>4}} | {{:>10}} | {{:>5}} |"
    print()
    print(line.format(*header))
    print(f"|{'-' * (width + 2)}|{'-' * 7}:|{'-' * 9}:|{'-' * 5}:|{'-' * 11}:|{'-' * 6}:|")
    for row in rows:
        print(line.format(*row))
    for result in results:
        if result.notes:
            print(f"\n{result.check}:")
            for note in result.notes:
                print(f"  - {note}")
    print(flush=True)


def stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with `&`
    stack = Stack(keep=args.keep_logs, web_workers=2 if args.quick else 4)
    results = []
    started = time.monotonic()
    try:
        stack.start()
        run_checks(stack, args, results)
    except KeyboardInterrupt:
        log("Interrupted; stopping the stack")
        results.append(checks.Result("interrupted", failures=1))
    except Exception as exc:
        traceback.print_exc()
        failed = checks.Result("stack start-up", failures=1)
        failed.note(f"{exc}")
        results.append(failed)
        stack.keep = True
    finally:
        if any(not r.clean for r in results):
            stack.keep = True  # logs say why
        stack.stop()
    print_table(results)
    log(f"Finished in {time.monotonic() - started:.0f} s")
    return 0 if results and all(r.clean for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
