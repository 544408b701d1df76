"""The five checks of `make chaos`, each against the live stack of chaos_stack.Stack.

Each check returns a Result (runs, failures, lost, duplicated, 5xx) and notes saying what
went wrong, so the closing table and the lines under it tell what a fix must address."""

import json
import random
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import httpx
from chaos_stack import PY, Process, Stack, free_port, log, wait_for

API = "/api/v1"
FINAL_STATES = {"succeeded", "failed", "rejected", "cancelled", "superseded", "rolled_back"}
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
NOTES_SHOWN = 12
TITLES = {
    "kill": "kill -9 worker mid-deploy",
    "redis": "Redis restart during registrations",
    "approvals": "parallel requests + approvals",
    "malformed": "malformed-input corpus",
    "schemathesis": "schemathesis",
}


@dataclass
class Result:
    check: str
    runs: int = 0
    failures: int = 0
    lost: int = 0
    duplicated: int = 0
    server_errors: int = 0
    notes: list[str] = field(default_factory=list)

    def fail(self, note: str, count: int = 1) -> None:
        self.failures += count
        self.note(note)

    def note(self, note: str) -> None:
        self.notes.append(note)
        log(f"  {self.check}: {note}")

    @property
    def clean(self) -> bool:
        return not (self.failures or self.lost or self.duplicated or self.server_errors)


class Api:
    """An API client acting as one user; usable from many threads (a client per thread).
    Counts every 5xx it receives and keeps the first few for the report."""

    def __init__(self, base_url: str, token: str):
        self.base_url, self.token = base_url, token
        self.local = threading.local()
        self.lock = threading.Lock()
        self.server_errors: list[str] = []

    def client(self) -> httpx.Client:
        if not hasattr(self.local, "client"):
            self.local.client = httpx.Client(
                base_url=self.base_url,
                headers={"Authorization": f"Token {self.token}"},
                timeout=httpx.Timeout(60.0, connect=10.0),
            )
        return self.local.client

    def call(self, method: str, path: str, **kwargs) -> httpx.Response:
        """Send one request; a 429 (throttled) waits for Retry-After and tries again."""
        for _ in range(10):
            response = self.client().request(method, path, **kwargs)
            if response.status_code != 429:
                break
            time.sleep(min(float(response.headers.get("Retry-After") or 1), 5))
        if response.status_code >= 500:
            with self.lock:
                self.server_errors.append(f"{method} {path} → {response.status_code}")
        return response

    def json(self, method: str, path: str, expect: int = 200, **kwargs):
        response = self.call(method, path, **kwargs)
        if response.status_code != expect:
            raise RuntimeError(
                f"{method} {path} answered {response.status_code}: {response.text[:300]}"
            )
        return response.json()

    def all(self, path: str, **params) -> list[dict]:
        """Every row of a paginated list."""
        rows, params = [], {"page_size": 200, **params}
        url = path
        while url:
            page = self.json("GET", url, params=params)
            rows += page["results"]
            url, params = page["next"], None
        return rows


@dataclass
class Fixture:
    """What every check shares: users' API clients, a ready model and targets."""

    stack: Stack
    artifacts: dict[int, bytes]
    model: str = "chaos-iris"
    local_target: str = "chaos-local"
    apis: dict[str, Api] = field(default_factory=dict)

    def api(self, who: str) -> Api:
        if who not in self.apis:
            self.apis[who] = Api(self.stack.base_url, self.stack.tokens[who])
        return self.apis[who]

    def fresh_api(self, who: str) -> Api:
        """A client of its own, so a check counts only its own 5xx."""
        return Api(self.stack.base_url, self.stack.tokens[who])


def prepare(stack: Stack) -> Fixture:
    """A model with two ready versions (real scikit-learn artifacts) and a local target
    that needs no approval, created through the API as their users would."""
    from deployments.demo import train_iris  # scikit-learn only, no Django

    fixture = Fixture(stack, {1: train_iris(0.05)[0], 2: train_iris(1.0)[0]})
    scientist, engineer = fixture.api("scientist"), fixture.api("engineer")
    engineer.json(
        "POST",
        f"{API}/targets/",
        expect=201,
        json={"name": fixture.local_target, "environment": "staging", "requires_approval": False},
    )
    create_model(scientist, fixture.model)
    for number in (1, 2):
        register(scientist, fixture.model, fixture.artifacts[number], f"chaos v{number}", 201)
    for number in (1, 2):
        wait_for(
            lambda n=number: version_status(scientist, fixture.model, n) == "ready",
            60,
            what=f"{fixture.model} v{number} ready",
        )
    log(f"Model {fixture.model} v1, v2 ready; target {fixture.local_target}")
    return fixture


def create_model(api: Api, name: str) -> None:
    api.json("POST", f"{API}/models/", expect=201, json={"name": name, "team": "chaos"})


def register(api: Api, model: str, artifact: bytes, description: str, expect=None):
    response = api.call(
        "POST",
        f"{API}/models/{model}/versions/",
        files={"artifact": ("model.joblib", artifact, "application/octet-stream")},
        data={"sample_input": json.dumps([IRIS_ROW]), "description": description},
    )
    if expect and response.status_code != expect:
        raise RuntimeError(f"registering {model} answered {response.status_code}: {response.text}")
    return response


def version_status(api: Api, model: str, number: int) -> str:
    return api.json("GET", f"{API}/models/{model}/versions/{number}/")["status"]


def request_deployment(api: Api, model: str, version: int, target: str) -> httpx.Response:
    return api.call(
        "POST",
        f"{API}/deployments/",
        json={"model": model, "version": version, "target": target, "reason": "chaos run"},
    )


def deployment(api: Api, pk: int) -> dict:
    return api.json("GET", f"{API}/deployments/{pk}/")


def wait_final(api: Api, pk: int, timeout: float) -> dict:
    """The deployment once final, or as it is when `timeout` runs out."""
    deadline = time.monotonic() + timeout
    while True:
        row = deployment(api, pk)
        if row["state"] in FINAL_STATES or time.monotonic() >= deadline:
            return row
        time.sleep(0.5)


# --- 1. kill -9 of the deploy worker --------------------------------------------------------


def check_killed_deploys(fx: Fixture, runs: int, rng: random.Random) -> Result:
    """Deploy v1/v2 alternately to one target; kill -9 the deploy worker at a random point
    of each deploy, restart it, and wait for the deployment to end. Then: every deployment
    final, exactly one live, no model server running that the database does not call
    live, and the live one answers /predict."""
    result = Result(TITLES["kill"], runs)
    api, stack = fx.fresh_api("scientist"), fx.stack
    patience = stack.lease_seconds + 75  # lease runs out, then the next reconciler pass
    # Two deploys without a kill: the first warms the worker up, the second says how long
    # a deploy takes from request to its end (the span the kill points are drawn from).
    ids, duration = [], 0.0
    for version in (1, 2):
        ids.append(request_or_raise(api, fx, version))
        started = time.monotonic()
        baseline = wait_final(api, ids[-1], 120)
        duration = time.monotonic() - started
        log(f"Deploy #{ids[-1]} without a kill: {baseline['state']} in {duration:.1f} s")
        if baseline["state"] != "succeeded":
            result.note(f"#{ids[-1]} ended {baseline['state']} without any kill")
    for run in range(runs):
        pk = request_or_raise(api, fx, 1 if run % 2 == 0 else 2)
        ids.append(pk)
        delay = rng.uniform(0, duration * 1.1)
        time.sleep(delay)
        stack.processes["worker"].kill9()
        stack.restart_worker()
        row = wait_final(api, pk, patience)
        log(f"Deploy {run + 1}/{runs} #{pk}: worker killed at {delay:.1f} s; {row['state']}")
        if row["state"] not in FINAL_STATES:
            result.fail(f"#{pk} still {row['state']} {patience} s after the kill")
    verify_one_live(fx, api, result, ids)
    result.server_errors = len(api.server_errors)
    return result


def request_or_raise(api: Api, fx: Fixture, version: int) -> int:
    response = request_deployment(api, fx.model, version, fx.local_target)
    if response.status_code != 201:
        raise RuntimeError(f"requesting a deployment answered {response.status_code}")
    return response.json()["id"]


def verify_one_live(fx: Fixture, api: Api, result: Result, ids: list[int]) -> None:
    rows = api.all(f"{API}/deployments/", target=fx.local_target)
    unfinished = [f"#{r['id']} {r['state']}" for r in rows if r["state"] not in FINAL_STATES]
    if unfinished:
        result.fail(f"not final: {', '.join(unfinished)}", 0)  # counted per deploy above
    live = [r for r in rows if r["state"] == "succeeded"]
    if len(live) != 1:
        result.fail(f"{len(live)} live deployments on {fx.local_target} (expected 1)")
        return
    port = int(live[0]["endpoint"].rsplit(":", 1)[1].strip("/"))

    def only_the_live_server():
        servers = fx.stack.model_servers()
        return set(servers.values()) == {port} and len(servers) == 1

    try:  # a reconciler pass (every 30 s) may still be stopping an old server
        wait_for(only_the_live_server, 70, interval=1, what="only the live model server")
    except TimeoutError:
        servers = fx.stack.model_servers()
        extra = {pid: p for pid, p in servers.items() if p != port}
        if extra:
            pids = ", ".join(f"pid {pid} on port {p}" for pid, p in extra.items())
            result.fail(
                f"{len(extra)} model server(s) running that the database does not call "
                f"live ({pids}) 70 s after the last deploy"
            )
        if port not in servers.values():
            result.fail(f"the live deployment #{live[0]['id']}'s server (port {port}) is gone")
    answer = httpx.post(live[0]["endpoint"] + "/predict", json={"instances": [IRIS_ROW]})
    if answer.status_code != 200 or "predictions" not in answer.json():
        result.fail(f"the live endpoint answered /predict with {answer.status_code}")
    log(f"Live: #{live[0]['id']} at {live[0]['endpoint']}; /predict {answer.status_code}")


# --- 2. Redis restart during registrations --------------------------------------------------


def check_redis_outage(fx: Fixture, runs: int, outage: float, workers: int = 4) -> Result:
    """Register `runs` versions from `workers` clients; kill -9 Redis a quarter of the way
    in and start it again `outage` seconds later. A client retries a 5xx (as CI would),
    with the same unique description. Lost: answered 201 but not ready within 60 s of
    Redis coming back. Duplicated: more versions with a description than 201s for it."""
    result = Result(TITLES["redis"], runs)
    api, stack = fx.fresh_api("scientist"), fx.stack
    model = "chaos-registry"
    create_model(api, model)
    artifact, tag = fx.artifacts[1], f"reg-{time.time_ns()}"
    finished = threading.Semaphore(0)
    back_at = {}

    def outage_thread():
        for _ in range(max(1, runs // 4)):
            finished.acquire()
        log(f"Killing Redis (kill -9) for {outage:.0f} s")
        stack.kill_redis()
        time.sleep(outage)
        stack.start_redis_again()
        back_at["t"] = time.monotonic()
        log("Redis is back")

    def one(number: int):
        description, status = f"{tag}-{number}", "no answer"
        for attempt in range(4):
            try:
                status = register(api, model, artifact, description).status_code
            except httpx.TransportError as exc:
                status = type(exc).__name__
            if status == 201 or (isinstance(status, int) and status < 500):
                break
            time.sleep(1 + attempt)
        finished.release()
        return description, status

    breaker = threading.Thread(target=outage_thread, daemon=True)
    breaker.start()
    with ThreadPoolExecutor(workers) as pool:
        answers = dict(pool.map(one, range(runs)))
    breaker.join(timeout=120)
    created = {d for d, status in answers.items() if status == 201}
    for description, status in answers.items():
        if status != 201:
            result.fail(f"{description}: last answer {status}")
    deadline = back_at.get("t", time.monotonic()) + 60
    versions = wait_versions_ready(api, model, created, deadline)
    result.lost = sum(
        1 for d in created if not any(v["status"] == "ready" for v in versions.get(d, []))
    )
    result.duplicated = sum(
        max(0, len(versions.get(d, [])) - (1 if d in created else 0)) for d in answers
    )
    if api.server_errors:
        result.note(
            f"{len(api.server_errors)} registrations answered 5xx while Redis was away "
            "(the client retried each)"
        )
    if result.duplicated:
        result.note(f"{result.duplicated} extra versions: committed although the client got no 201")
    if result.lost:
        stuck = sorted({v["status"] for d in created for v in versions.get(d, [])} - {"ready"})
        result.note(f"{result.lost} not ready 60 s after Redis came back (states: {stuck})")
    result.server_errors = len(api.server_errors)
    return result


def wait_versions_ready(api: Api, model: str, created: set, deadline: float) -> dict:
    """The model's versions by description, once every created one is ready or at deadline."""
    while True:
        versions: dict[str, list] = {}
        for row in api.all(f"{API}/models/{model}/versions/"):
            versions.setdefault(row["description"], []).append(row)
        ready = all(any(v["status"] == "ready" for v in versions.get(d, [])) for d in created)
        if ready or time.monotonic() >= deadline:
            return versions
        time.sleep(1)


# --- 3. parallel requests and approvals -----------------------------------------------------


class CDStub(BaseHTTPRequestHandler):
    """A CD system that deploys at once: the webhook target's deploys end in milliseconds,
    so a hundred of them do not take minutes of model-server starts."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = {"status": "succeeded", "endpoint": f"http://127.0.0.1:{self.server.server_port}"}
        self.answer(json.dumps(body).encode())

    def do_GET(self):
        self.answer(b'{"status": "ok"}')

    def answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def approval_target(fx: Fixture, stub_port: int) -> str:
    """A target that needs approval, deploying through the stub CD system (or, if main
    refuses that, through the local backend)."""
    name = "chaos-approval"
    body = {"name": name, "environment": "staging", "requires_approval": True}
    webhook = {
        **body,
        "backend": "webhook",
        "backend_settings": {"url": f"http://127.0.0.1:{stub_port}/deploy", "secret": "s" * 32},
    }
    response = fx.api("engineer").call("POST", f"{API}/targets/", json=webhook)
    if response.status_code != 201:
        log(f"Webhook target refused ({response.text[:200]}); using the local backend")
        fx.api("engineer").json("POST", f"{API}/targets/", expect=201, json=body)
    return name


def check_parallel_approvals(fx: Fixture, runs: int) -> Result:
    """`runs` threads request a deployment to one approval target at once; then two
    engineers approve each request at the same moment. Exactly one approval wins each;
    at no time is more than one deployment running or live on the target."""
    result = Result(TITLES["approvals"], runs)
    scientist = fx.fresh_api("scientist")
    engineers = [fx.fresh_api("engineer"), fx.fresh_api("engineer2")]
    stub = ThreadingHTTPServer(("127.0.0.1", free_port()), CDStub)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    try:
        target = approval_target(fx, stub.server_port)
        ids = request_all_at_once(fx, scientist, target, runs, result)
        watch = Watch(scientist, target).start()
        with ThreadPoolExecutor(min(25, max(1, len(ids)))) as pool:
            outcomes = list(pool.map(lambda pk: approve_twice(engineers, pk), ids))
        for pk, statuses in zip(ids, outcomes, strict=True):
            judge_approvals(scientist, pk, statuses, result)
        wait_all_final(scientist, target, ids, result, timeout=120 + runs * 2)
        watch.stop()
        if watch.most_running > 1 or watch.most_live > 1:
            result.fail(
                f"up to {watch.most_running} running and {watch.most_live} live at once on {target}"
            )
    finally:
        stub.shutdown()
        stub.server_close()
    result.server_errors = sum(len(a.server_errors) for a in [scientist, *engineers])
    return result


def request_all_at_once(fx, api, target, runs, result) -> list[int]:
    start = threading.Barrier(runs, timeout=60)

    def one(number):
        start.wait()
        return request_deployment(api, fx.model, 1 + number % 2, target)

    with ThreadPoolExecutor(runs) as pool:
        responses = list(pool.map(one, range(runs)))
    ids = []
    for response in responses:
        if response.status_code == 201 and response.json()["state"] == "requested":
            ids.append(response.json()["id"])
        else:
            result.fail(f"a request answered {response.status_code}: {response.text[:200]}")
    log(f"{len(ids)} of {runs} parallel requests created; approving each twice at once")
    return ids


def approve_twice(engineers: list[Api], pk: int) -> list:
    """Both engineers approve deployment `pk` at the same moment; return both statuses."""
    together = threading.Barrier(len(engineers), timeout=30)
    statuses = [None] * len(engineers)

    def approve(index):
        together.wait()
        response = engineers[index].call(
            "POST", f"{API}/deployments/{pk}/approve/", json={"comment": "chaos"}
        )
        statuses[index] = response.status_code

    threads = [threading.Thread(target=approve, args=(i,)) for i in range(len(engineers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def judge_approvals(api: Api, pk: int, statuses: list, result: Result) -> None:
    wins = [i for i, status in enumerate(statuses) if status in (200, 201)]
    if len(wins) != 1:
        result.fail(f"#{pk}: {len(wins)} approvals won (answers {statuses})")
        return
    approver = deployment(api, pk)["approved_by"]
    if approver != ("chaos-engineer", "chaos-engineer2")[wins[0]]:
        result.fail(f"#{pk}: approved_by is {approver!r}, not the engineer whose approval won")


def wait_all_final(api, target, ids, result, timeout) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = {r["id"]: r["state"] for r in api.all(f"{API}/deployments/", target=target)}
        waiting = [pk for pk in ids if rows.get(pk) not in FINAL_STATES]
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(1)
    if waiting:
        result.fail(f"{len(waiting)} deployments not final after {timeout} s", len(waiting))
    states = {}
    for pk in ids:
        states[rows.get(pk)] = states.get(rows.get(pk), 0) + 1
    log(f"Approval target's deployments: {states}")


class Watch:
    """Samples, in a thread, how many deployments of a target are running and live."""

    def __init__(self, api: Api, target: str):
        self.api, self.target = api, target
        self.most_running = self.most_live = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> "Watch":
        self.thread.start()
        return self

    def run(self) -> None:
        while not self.stopping.is_set():
            self.most_running = max(self.most_running, self.count("running"))
            self.most_live = max(self.most_live, self.count("succeeded"))
            time.sleep(0.2)

    def count(self, state: str) -> int:
        page = self.api.call("GET", f"{API}/deployments/", params={"target": self.target,
                                                                   "state": state})  # fmt: skip
        return page.json()["count"] if page.status_code == 200 else 0

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


# --- 4. malformed input on every write endpoint ---------------------------------------------

DEEP = 1000
JSON_RAW_BODIES = [  # (label, bytes); the first ones matter most (kept by --quick)
    ("nested arrays 1000 deep", b"[" * DEEP + b"]" * DEEP),
    ("nested objects 1000 deep", b'{"a":' * DEEP + b"1" + b"}" * DEEP),
    ("nested 100000 deep", b"[" * 100_000 + b"]" * 100_000),
    ("invalid UTF-8", b'{"name": "\xff\xfe", "title": "\xed\xa0\x80"}'),
    ("not JSON", b"{not json"),
    ("NaN", b'{"hours": NaN, "version": Infinity}'),
    ("number overflow", b'{"version": 1e999, "hours": 1e999}'),
    ("empty body", b""),
    ("null", b"null"),
    ("a list", b"[]"),
    ("a string", b'"text"'),
    ("NUL bytes", b'{"name": "a\\u0000b"}'),
]
FIELD_VALUES = [  # (label, value) put into one field of a plausible body
    ("[[null, null]]", [[None, None]]),
    ("lone surrogate", "\ud800"),
    ("out-of-range offset", "2026-01-01T00:00:00-19:33"),
    ("301 characters", "r" * 301),
    ("huge string", "x" * 100_000),
    ("object", {"a": {"b": [1]}}),
    ("null", None),
    ("list of lists", [["a"]]),
    ("year 0", "0000-01-01T00:00:00Z"),
    ("year 99999", "99999-01-01T00:00:00Z"),
    ("2**80", 2**80),
    ("-1", -1),
    ("float", 1.5),
    ("true", True),
    ("empty string", ""),
    ("NUL", "a\x00b"),
    ("1000 tags", ["t"] * 1000),
    ("list of objects", [{"a": 1}]),
]
FORM_VALUES = [
    ("invalid UTF-8", b"\xff\xfe"),
    ("encoded surrogate", b"\xed\xa0\x80"),
    ("[[null,null]] text", b"[[null, null]]"),
    ("huge", b"y" * 100_000),
]
QUERY_VALUES = [
    ("out-of-range offset", "2026-01-01T00%3A00%3A00-19%3A33"),
    ("encoded surrogate", "%ED%A0%80"),
    ("invalid UTF-8", "%FF%FE"),
    ("year 0", "0000-01-01"),
    ("year 99999", "99999-01-01"),
    ("NUL", "a%00b"),
    ("huge", "q" * 5000),
    ("2**80", str(2**80)),
    ("-1", "-1"),
]
PATH_VALUES = [("2**80", str(2**80)), ("encoded surrogate", "%ED%A0%80"), ("-1", "-1")]
PLAUSIBLE = {"string": "chaos", "integer": 1, "number": 1.0, "boolean": True, "array": ["a"]}


def load_schema(stack: Stack) -> dict:
    """The OpenAPI schema of main, written by drf-spectacular at set-up (the schema page
    needs a session, not a token)."""
    return json.loads(stack.schema_path.read_text())


def path_values(fx: Fixture) -> dict:
    """A real object for each kind of path parameter, so requests reach their parsers
    (a 404 answers before the body is read). The check probes a loopback port where
    nothing listens."""
    engineer = fx.api("engineer")
    check = engineer.call(
        "POST", f"{API}/checks/", json={"name": "chaos-check", "url": "http://127.0.0.1:9/"}
    )
    incident = engineer.call("POST", f"{API}/incidents/", json={"title": "chaos incident"})
    page = engineer.call("POST", f"{API}/pages/", json={"title": "Chaos page", "body": "text"})
    deployments = engineer.all(f"{API}/deployments/")
    values = {
        "models": fx.model,
        "targets": fx.local_target,
        "versions": "1",
        "checks": check.json().get("id") if check.status_code == 201 else 1,
        "incidents": incident.json().get("id") if incident.status_code == 201 else 1,
        "pages": page.json().get("slug") if page.status_code == 201 else "chaos-page",
        "deployments": deployments[0]["id"] if deployments else 1,
        "tokens": 999_999,
    }
    return {key: str(value) for key, value in values.items()}


def fill_path(path: str, values: dict, enums: dict, default: str = "1") -> str:
    """Replace each {param} with a value chosen by the path segment before it."""
    parts = path.strip("/").split("/")
    for index, part in enumerate(parts):
        if part.startswith("{"):
            name = part[1:-1]
            parts[index] = enums.get(name) or values.get(parts[index - 1], default)
    return "/" + "/".join(parts) + "/"


def malformed_corpus(schema: dict, values: dict) -> list[tuple]:
    """(priority, method, path, label, request kwargs) for every write endpoint's body and
    every operation's query and path parameters."""
    components = schema.get("components", {}).get("schemas", {})
    corpus = []
    for template, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch"):
                continue
            params = operation.get("parameters", [])
            enums = {
                p["name"]: str(p["schema"]["enum"][0])
                for p in params
                if p.get("in") == "path" and p.get("schema", {}).get("enum")
            }
            path = fill_path(template, values, enums)
            corpus += query_items(method, path, template, params)
            if method != "get":
                fields = body_fields(operation, components)
                corpus += body_items(method, path, fields)
    corpus.sort(key=lambda item: item[0])
    return corpus


def body_fields(operation: dict, components: dict) -> dict:
    content = operation.get("requestBody", {}).get("content", {})
    schema = (content.get("application/json") or next(iter(content.values()), {})).get("schema")
    ref = (schema or {}).get("$ref", "")
    found = components.get(ref.rsplit("/", 1)[-1], {}) if ref else (schema or {})
    return {name: prop.get("type") for name, prop in found.get("properties", {}).items()}


def body_items(method, path, fields) -> list[tuple]:
    items = []
    json_headers = {"Content-Type": "application/json"}
    for rank, (label, raw) in enumerate(JSON_RAW_BODIES):
        items.append((rank, method, path, label, {"content": raw, "headers": json_headers}))
    plausible = {name: PLAUSIBLE.get(kind, "chaos") for name, kind in fields.items()}
    for rank, (label, value) in enumerate(FIELD_VALUES):
        for name in fields:
            body = json.dumps({**plausible, name: value}).encode()
            kwargs = {"content": body, "headers": json_headers}
            items.append((rank + 1, method, path, f"{name}={label}", kwargs))
    for rank, (label, raw) in enumerate(FORM_VALUES):
        for name in fields:
            form = {key: (None, str(v).encode()) for key, v in plausible.items() if key != name}
            kwargs = {"files": {**form, name: (None, raw)}}
            items.append((rank + 3, method, path, f"form {name}={label}", kwargs))
    return items


def query_items(method, path, template, params) -> list[tuple]:
    items = []
    for rank, (label, raw) in enumerate(QUERY_VALUES):
        for param in params:
            if param.get("in") == "query":
                url = f"{path}?{param['name']}={raw}"
                items.append((rank, method, url, f"?{param['name']}={label}", {}))
    if "{" in template:
        for label, raw in PATH_VALUES:
            url = fill_path(template, {}, {}, default=raw)
            items.append((len(QUERY_VALUES), method, url, f"path {label}", {}))
    return items


def check_malformed_input(fx: Fixture, limit: int, threads: int = 6) -> Result:
    """Send the malformed-input corpus; every answer must be below 500. A dropped
    connection (a crashed web worker) is a failure."""
    schema = load_schema(fx.stack)
    api = fx.fresh_api("engineer")
    corpus = malformed_corpus(schema, path_values(fx))
    if limit:
        corpus = corpus[:limit]
    result = Result(TITLES["malformed"], len(corpus))
    log(f"Malformed input: {len(corpus)} requests")
    broken = []

    def send(item):
        _, method, url, label, kwargs = item
        endpoint = f"{method.upper()} {url.split('?')[0]}"
        try:
            status = api.call(method.upper(), url, **kwargs).status_code
        except httpx.TransportError as exc:
            broken.append(f"{endpoint} [{label}]: {type(exc).__name__}")
            return None
        return (label, endpoint) if status >= 500 else None

    with ThreadPoolExecutor(threads) as pool:
        errors = [e for e in pool.map(send, corpus) if e]
    result.server_errors = len(errors)
    by_input: dict[str, list[str]] = {}
    for label, endpoint in errors:
        by_input.setdefault(label, []).append(endpoint)
    ranked = sorted(by_input.items(), key=lambda item: -len(item[1]))
    for label, endpoints in ranked[: NOTES_SHOWN * 2]:
        more = f" and {len(endpoints) - 4} more" if len(endpoints) > 4 else ""
        shown = ", ".join(endpoints[:4]) + more
        result.note(f"[{label}] → 5xx on {shown}")
    if len(ranked) > NOTES_SHOWN * 2:
        result.note(f"… and {len(ranked) - NOTES_SHOWN * 2} more kinds of input with a 5xx")
    for line in broken[:NOTES_SHOWN]:
        result.fail(line)
    result.failures += max(0, len(broken) - NOTES_SHOWN)
    return result


# --- 5. schemathesis ------------------------------------------------------------------------

TOKEN_REVOKE = "delete_token"  # run apart: it could revoke the fuzzing token itself


def check_schemathesis(fx: Fixture, examples: int, seed: int, quick: bool) -> Result:
    """schemathesis on every operation with `not_a_server_error` (and the stateful phase
    where the schema has links), as an engineer; 5xx counted from its HAR report."""
    stack = fx.stack
    schema_path = stack.schema_path
    result = Result(TITLES["schemathesis"], 0)
    runs = [
        ("engineer", ["--exclude-operation-id", TOKEN_REVOKE]),
        ("admin", ["--include-operation-id", TOKEN_REVOKE]),
    ][: 1 if quick else 2]  # --quick leaves out the one operation to save a start-up
    for index, (who, selection) in enumerate(runs):
        har = stack.folder / f"schemathesis-{index}.har"
        command = [
            str(Path(PY).parent / "schemathesis"), "--no-color", "run", str(schema_path),
            "--url", stack.base_url, "--checks", "not_a_server_error",
            "-H", f"Authorization: Token {stack.tokens[who]}",
            "--max-examples", str(examples), "--seed", str(seed), "--workers", "2",
            "--request-timeout", "60", "--suppress-health-check", "all",
            "--report", "har", "--report-har-path", str(har), *selection,
        ]  # fmt: skip
        if quick:
            command += ["--phases", "examples,fuzzing"]
        log(f"schemathesis ({who}): {examples} examples per operation, seed {seed}")
        process = Process(f"schemathesis-{index}", command, stack.env(), stack.log_dir)
        returncode = run_with_progress(process, har, cwd=stack.folder)
        read_har(har, result)
        if returncode != 0 and not result.server_errors:
            result.fail(f"schemathesis exited {returncode}: {process.tail(30)}")
    return result


def run_with_progress(process: Process, har: Path, cwd: Path, timeout: float = 3600) -> int:
    """Run schemathesis to its end, printing how many requests it has sent every 60 s
    (its HAR report grows as it goes); stopped by its pid after `timeout`."""
    process.start(cwd=cwd)
    deadline = time.monotonic() + timeout
    while process.alive():
        if time.monotonic() >= deadline:
            process.stop()
            return -1
        try:
            process.popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            sent = har.read_bytes().count(b'"method"') if har.exists() else 0
            log(f"schemathesis: {sent} requests so far")
    return process.popen.returncode


def read_har(har: Path, result: Result) -> None:
    try:
        entries = json.loads(har.read_text())["log"]["entries"]
    except (OSError, ValueError, KeyError) as exc:
        result.fail(f"no HAR report from schemathesis ({exc})")
        return
    result.runs += len(entries)
    seen = {}
    for entry in entries:
        status = entry["response"]["status"]
        if status >= 500:
            result.server_errors += 1
            path = urlparse(entry["request"]["url"]).path
            path = path if len(path) <= 80 else path[:77] + "..."
            key = f"{entry['request']['method']} {path} → {status}"
            seen[key] = seen.get(key, 0) + 1
    for key, count in list(seen.items())[:NOTES_SHOWN]:
        result.note(f"{key} ({count} times)")
