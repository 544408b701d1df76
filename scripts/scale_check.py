#!/usr/bin/env python
"""`make scale-check`: the portal scaled out on one machine, driven across its instances.

Starts (chaos_stack.Stack: a private Redis, a fresh database on the PostgreSQL server of
DATABASE_URL, every process in its own session, stopped by pid) two gunicorn instances on
free ports, each with `mlops_portal/gunicorn.conf.py` and so its own control socket, two
Celery workers, the notifier, one beat and the outbox relay. Then, through both web
instances at once:

- registrations: every version validated exactly once (one `validation_started` and one
  `validated` event each), by either worker;
- deploys to a webhook target (a stub CD system that counts calls): every deployment final,
  each deployed exactly once (one call per deployment);
- approvals: two engineers approve the same deployment at the same moment, one through each
  instance; exactly one approval wins;
- kill -9 of one web instance (master and workers) in the middle of registrations, then its
  restart on the same port and socket: every acknowledged registration is there and
  validated, nothing is left in the outbox, every version is final;
- beat: one beat sends the scheduled jobs; a second beat refuses to start.

Prints a report and exits 1 if any check failed.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/x .venv/bin/python scripts/scale_check.py
"""

import collections
import re
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # deployments.demo

from chaos_checks import API, FINAL_STATES, Api, CDStub, approve_twice, register, wait_final
from chaos_stack import PY, Process, Stack, free_port, log, wait_for

REGISTRATIONS = 8
DEPLOYS = 6
APPROVALS = 3
DURING_KILL = 10


class ScaleStack(Stack):
    """Stack with two web instances and two workers."""

    def __init__(self):
        super().__init__(web_workers=2)
        self.web_ports = [free_port(), free_port()]
        self.base_urls = [f"http://127.0.0.1:{port}" for port in self.web_ports]
        self.base_url = self.base_urls[0]

    def env(self) -> dict:
        # The shared cache (login lockout, throttles, the beat lock) is this run's Redis,
        # whatever CACHE_URL the caller had (the test settings set locmem://).
        return {**super().env(), "CACHE_URL": self.redis_url}

    def web(self, index: int) -> Process:
        port = self.web_ports[index]
        env = {**self.env(), "PORTAL_BIND": f"127.0.0.1:{port}"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        command = [
            PY, "-m", "gunicorn", "mlops_portal.wsgi", "-c", "mlops_portal/gunicorn.conf.py",
            "--bind", f"127.0.0.1:{port}", "--workers", str(self.web_workers),
        ]  # fmt: skip
        return Process(f"web-{index + 1}", command, env, self.log_dir)

    def worker(self, index: int) -> Process:
        command = [
            PY, "-m", "celery", "-A", "mlops_portal", "worker", "--loglevel", "INFO",
            "--queues", "default,deploy,probes", "--concurrency", "2",
            "--hostname", f"scale-worker-{index + 1}@localhost", "--without-gossip",
        ]  # fmt: skip
        return Process(f"worker-{index + 1}", command, self.env(), self.log_dir)

    def beat(self, name: str) -> Process:
        command = [
            PY, "-m", "celery", "-A", "mlops_portal", "beat", "--loglevel", "INFO", "--pidfile=",
            "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
            "-s", str(self.folder / f"{name}-schedule"),
        ]  # fmt: skip
        return Process(name, command, self.env(), self.log_dir)

    def start_services(self) -> None:
        celery = [PY, "-m", "celery", "-A", "mlops_portal"]
        notifier = [
            *celery, "worker", "--loglevel", "INFO", "--queues", "notifications",
            "--concurrency", "1", "--hostname", "scale-notifier@localhost", "--without-gossip",
        ]  # fmt: skip
        for process in (
            self.web(0), self.web(1), self.worker(0), self.worker(1),
            Process("notifier", notifier, self.env(), self.log_dir), self.beat("beat"),
            Process("relay", [PY, "manage.py", "relay_outbox"], self.env(), self.log_dir),
        ):  # fmt: skip
            self.processes[process.name] = process.start()
        for index in range(2):
            self.wait_web(index)
            self.wait_worker_ready(self.processes[f"worker-{index + 1}"])
        log(f"Web instances at {', '.join(self.base_urls)}; 2 workers, notifier, beat, relay")

    def wait_web(self, index: int) -> None:
        web = self.processes[f"web-{index + 1}"]

        def answers():
            if not web.alive():
                raise RuntimeError(f"{web.name} exited:\n{web.tail()}")
            return httpx.get(self.base_urls[index] + "/healthz", timeout=2).status_code == 200

        wait_for(answers, 90, what=f"{web.name} answering /healthz")

    def sql(self, query: str, *args) -> list[tuple]:
        with psycopg.connect(self.database_url) as db:
            return db.execute(query, args).fetchall()


class Report:
    def __init__(self):
        self.lines: list[tuple[str, bool, str]] = []

    def add(self, check: str, ok: bool, detail: str) -> None:
        self.lines.append((check, ok, detail))
        log(f"{'ok  ' if ok else 'FAIL'} {check}: {detail}")

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.lines)

    def print(self, stack: ScaleStack, seconds: float) -> None:
        print(f"\nScale-out check: 2 web instances (ports {stack.web_ports[0]}, "
              f"{stack.web_ports[1]}), 2 workers, 1 beat, notifier, relay; PostgreSQL + Redis; "
              f"{seconds:.0f} s")  # fmt: skip
        for check, ok, detail in self.lines:
            print(f"  {'PASS' if ok else 'FAIL'}  {check}: {detail}")
        print(f"Result: {'PASS' if self.ok else 'FAIL'}")


def apis(stack: ScaleStack, who: str) -> list[Api]:
    """One API client of `who` per web instance."""
    return [Api(url, stack.tokens[who]) for url in stack.base_urls]


def check_control_sockets(stack: ScaleStack, report: Report) -> None:
    sockets = sorted((stack.folder / "var" / "run").glob("gunicorn-*.ctl"))
    own = [p.name for p in sockets if stat.S_ISSOCK(p.stat().st_mode)]
    expected = sorted(f"gunicorn-127.0.0.1-{port}.ctl" for port in stack.web_ports)
    report.add("control sockets", own == expected, f"one per instance: {', '.join(own)}")


def validation_events(stack: ScaleStack, model: str) -> dict[int, collections.Counter]:
    rows = stack.sql(
        "SELECT v.number, e.kind FROM deployments_versionevent e "
        "JOIN deployments_modelversion v ON v.id = e.version_id "
        "JOIN deployments_registeredmodel m ON m.id = v.model_id WHERE m.name = %s",
        model,
    )
    events: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for number, kind in rows:
        events[number][kind] += 1
    return events


def jobs_per_worker(stack: ScaleStack, task: str) -> list[int]:
    pattern = re.compile(rf"Task {re.escape(task)}\[[^\]]+\] succeeded")
    return [
        len(pattern.findall(stack.processes[f"worker-{i}"].log_path.read_text(errors="replace")))
        for i in (1, 2)
    ]


def versions_final(stack: ScaleStack, model: str) -> dict[int, str]:
    rows = stack.sql(
        "SELECT v.number, v.status FROM deployments_modelversion v "
        "JOIN deployments_registeredmodel m ON m.id = v.model_id WHERE m.name = %s",
        model,
    )
    return dict(rows)


def all_final(stack: ScaleStack, model: str, count: int | None = None) -> bool:
    statuses = versions_final(stack, model).values()
    done = all(status in ("ready", "invalid") for status in statuses)
    return done and (count is None or len(statuses) == count)


def check_registrations(stack: ScaleStack, artifact: bytes, report: Report) -> None:
    scientists = apis(stack, "scientist")
    scientists[0].json("POST", f"{API}/models/", expect=201, json={"name": "scale", "team": "s"})
    with ThreadPoolExecutor(REGISTRATIONS) as pool:
        answers = list(pool.map(
            lambda i: register(scientists[i % 2], "scale", artifact, f"v{i}").status_code,
            range(REGISTRATIONS),
        ))  # fmt: skip
    wait_for(lambda: all_final(stack, "scale", REGISTRATIONS), 120, what="every version validated")
    events = validation_events(stack, "scale")
    once = all(e["validation_started"] == 1 and e["validated"] == 1 for e in events.values())
    per_worker = jobs_per_worker(stack, "deployments.tasks.validate_version_task")
    statuses = collections.Counter(versions_final(stack, "scale").values())
    report.add(
        "registrations, exactly once",
        answers == [201] * REGISTRATIONS and once and len(events) == REGISTRATIONS,
        f"{REGISTRATIONS} through both instances at once ({answers.count(201)} x 201), "
        f"{dict(statuses)}, each validated once; validations per worker {per_worker}",
    )


def check_deploys(stack: ScaleStack, stub: ThreadingHTTPServer, report: Report) -> None:
    engineers = apis(stack, "engineer")
    for name in ("scale-a", "scale-b"):
        engineers[0].json("POST", f"{API}/targets/", expect=201, json=webhook_target(name, stub))

    def request(i):  # alternately through each instance, to each target, versions 1 to 3
        body = {"model": "scale", "version": 1 + i % 3, "target": ("scale-a", "scale-b")[i % 2],
                "reason": "scale check"}  # fmt: skip
        return engineers[i % 2].call("POST", f"{API}/deployments/", json=body)

    with ThreadPoolExecutor(DEPLOYS) as pool:
        responses = list(pool.map(request, range(DEPLOYS)))
    ids = [r.json()["id"] for r in responses if r.status_code == 201]
    final = {pk: wait_final(engineers[1], pk, 90)["state"] for pk in ids}
    calls = stub.calls
    deployed_once = all(calls[pk] == 1 for pk, state in final.items() if state == "succeeded")
    report.add(
        "deploys, exactly once",
        len(ids) == DEPLOYS
        and all(s in FINAL_STATES for s in final.values())
        and deployed_once
        and max(calls.values(), default=0) == 1,
        f"{len(ids)} requested through both instances, final: "
        f"{dict(collections.Counter(final.values()))}; CD calls per deployment: "
        f"max {max(calls.values(), default=0)}; deploy jobs per worker "
        f"{jobs_per_worker(stack, 'deployments.tasks.run_deployment_task')}",
    )


def webhook_target(name: str, stub, approval: bool = False) -> dict:
    return {
        "name": name, "environment": "staging", "requires_approval": approval,
        "backend": "webhook",
        "backend_settings": {"url": f"http://127.0.0.1:{stub.server_port}/deploy",
                             "secret": "s" * 32},
    }  # fmt: skip


def check_approvals(stack: ScaleStack, stub, report: Report) -> None:
    scientist = apis(stack, "scientist")[0]
    # engineer through instance 1, engineer2 through instance 2, at the same moment
    engineers = [Api(stack.base_urls[0], stack.tokens["engineer"]),
                 Api(stack.base_urls[1], stack.tokens["engineer2"])]  # fmt: skip
    engineers[0].json("POST", f"{API}/targets/", expect=201,
                      json=webhook_target("scale-approval", stub, approval=True))  # fmt: skip
    outcomes = []
    for run in range(APPROVALS):
        pk = scientist.json("POST", f"{API}/deployments/", expect=201, json={
            "model": "scale", "version": 1 + run % 2, "target": "scale-approval",
            "reason": "scale check"})["id"]  # fmt: skip
        statuses = approve_twice(engineers, pk)
        wins = [i for i, status in enumerate(statuses) if status in (200, 201)]
        approver = scientist.json("GET", f"{API}/deployments/{pk}/")["approved_by"]
        winner = ("chaos-engineer", "chaos-engineer2")[wins[0]] if len(wins) == 1 else None
        outcomes.append((statuses, len(wins) == 1 and approver == winner))
        wait_final(scientist, pk, 60)
    report.add(
        "one approval wins",
        all(ok for _, ok in outcomes),
        f"{APPROVALS} deployments, each approved at once through both instances; answers "
        f"{[s for s, _ in outcomes]}",
    )


def check_web_killed(stack: ScaleStack, artifact: bytes, report: Report) -> None:
    """Registrations through both instances while instance 1 is killed with -9 and
    restarted: every acknowledged one is there and validated; none is half-done."""
    scientists = apis(stack, "scientist")
    scientists[1].json(
        "POST", f"{API}/models/", expect=201, json={"name": "scale-kill", "team": "s"}
    )
    acknowledged, refused = [], 0
    lock = threading.Lock()

    def one(i):
        nonlocal refused
        try:
            response = register(scientists[i % 2], "scale-kill", artifact, f"k{i}")
        except httpx.HTTPError:
            with lock:
                refused += 1
            return
        if response.status_code == 201:
            with lock:
                acknowledged.append(response.json()["version"])

    web = stack.processes["web-1"]
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(one, i) for i in range(DURING_KILL)]
        time.sleep(0.5)
        web.kill9()
        for future in futures:
            future.result()
    web.start()
    stack.wait_web(0)
    after = register(scientists[0], "scale-kill", artifact, "after restart")
    if after.status_code == 201:
        acknowledged.append(after.json()["version"])
    wait_for(lambda: all_final(stack, "scale-kill"), 120, what="every version of scale-kill final")
    stored = versions_final(stack, "scale-kill")
    pending = stack.sql(
        "SELECT count(*) FROM mlops_portal_outboxmessage WHERE published_at IS NULL"
    )
    events = validation_events(stack, "scale-kill")
    once = all(events[n]["validated"] == 1 for n in stored)
    report.add(
        "web instance killed (-9) and restarted",
        set(acknowledged) <= set(stored) and once and pending[0][0] == 0
        and after.status_code == 201,
        f"{len(acknowledged)} registrations acknowledged ({refused} refused while it was "
        f"down), all {len(stored)} stored versions validated once, outbox empty; answers "
        f"again after restart on the same port and socket",
    )  # fmt: skip


def check_beat(stack: ScaleStack, report: Report) -> None:
    heartbeat = stack.sql("SELECT host, at FROM mlops_portal_heartbeat WHERE name = 'beat'")
    second = stack.beat("beat-2").start()
    try:
        wait_for(lambda: not second.alive(), 60, what="the second beat exiting")
        code = second.popen.returncode
    except TimeoutError:
        code = None
    finally:
        second.stop()
    refused = "Another beat is running" in second.log_path.read_text(errors="replace")
    first_alive = stack.processes["beat"].alive()
    report.add(
        "one beat",
        bool(heartbeat) and code not in (None, 0) and refused and first_alive,
        "beat's heartbeat written; a second beat "
        + (f"exited with status {code}" if code is not None else "was still running after 60 s")
        + (": 'Another beat is running …'" if refused else " without refusing")
        + ("; the first still runs" if first_alive else "; the first stopped"),
    )


class CountingStub(CDStub):
    def do_POST(self):
        import json

        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.server.lock:
            self.server.calls[body.get("deployment_id")] += 1
        answer = {"status": "succeeded", "endpoint": f"http://127.0.0.1:{self.server.server_port}"}
        self.answer(json.dumps(answer).encode())


def main() -> int:
    from deployments.demo import train_iris  # scikit-learn only, no Django

    started = time.monotonic()
    stack = ScaleStack()
    stub = ThreadingHTTPServer(("127.0.0.1", free_port()), CountingStub)
    stub.calls, stub.lock = collections.Counter(), threading.Lock()
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    report = Report()
    try:
        stack.start()
        artifact = train_iris(1.0)[0]
        check_control_sockets(stack, report)
        check_registrations(stack, artifact, report)
        check_deploys(stack, stub, report)
        check_approvals(stack, stub, report)
        check_web_killed(stack, artifact, report)
        check_beat(stack, report)
    except Exception as exc:
        report.add("run", False, f"{exc.__class__.__name__}: {exc}")
        for process in stack.processes.values():
            log(f"--- {process.name}\n{process.tail()}")
    finally:
        stub.shutdown()
        stub.server_close()
        stack.stop()
    report.print(stack, time.monotonic() - started)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
