"""A stand-in Kubernetes API server for the `kserve` backend's tests (no real API server
can run on these machines).

It serves the part of the API the official client calls for InferenceServices: create,
get, list + watch, merge patch and delete on
`/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices[/{name}]`, with
Kubernetes `Status` bodies for errors and a bearer token checked on every request.

Every manifest it receives (a created object, or the object a patch produces) is validated
against the InferenceService CRD's OpenAPI schema from the KServe release
(deployments/backends/schemas/), strictly: an unknown field is an error too. An invalid one
is answered 422 and kept in `rejected`, so a test fails on it.

A small controller thread plays KServe: a new predictor spec becomes a revision that is
Ready after `ready_delay` seconds (unless `hold()` keeps it not ready, or `fail()` makes
it fail); `canaryTrafficPercent` splits the traffic between the latest revision and the
last one rolled out at 100 %, as KServe's Knative reconciler does."""

import copy
import http.server
import itertools
import json
import re
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jsonschema

SCHEMA_FILE = (
    Path(__file__).resolve().parents[2]
    / "deployments/backends/schemas/inferenceservice-v1beta1.json"
)
PATH = re.compile(
    r"^/apis/serving\.kserve\.io/v1beta1/namespaces/(?P<ns>[^/]+)/inferenceservices"
    r"(?:/(?P<name>[^/]+))?$"
)
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
TOKEN = "stand-in-bearer-token-0123456789"


def strict(schema):
    """The schema as the API server applies it with strict field validation: unknown fields
    are errors, and int-or-string fields take only an integer or a string."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    if result.get("x-kubernetes-int-or-string") and "anyOf" not in result:
        result["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return result


def load_validator():
    document = json.loads(SCHEMA_FILE.read_text())
    return jsonschema.Draft7Validator(strict(document["openAPIV3Schema"]))


VALIDATOR = load_validator()


def manifest_errors(obj: dict) -> list[str]:
    """Why `obj` is not a valid InferenceService (empty when it is)."""
    errors = [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in VALIDATOR.iter_errors(obj)
    ]
    if obj.get("apiVersion") != "serving.kserve.io/v1beta1":
        errors.append(f"apiVersion: {obj.get('apiVersion')!r}")
    if obj.get("kind") != "InferenceService":
        errors.append(f"kind: {obj.get('kind')!r}")
    metadata = obj.get("metadata") or {}
    name = metadata.get("name", "")
    if not (DNS_1035.match(name) and len(name) <= 63):
        errors.append(f"metadata.name: {name!r} is not a DNS-1035 label")
    for field in ("labels", "annotations"):
        values = metadata.get(field) or {}
        if not all(isinstance(value, str) for value in values.values()):
            errors.append(f"metadata.{field}: values must be strings")
    return errors


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def status_body(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "code": code,
    }


class KubeStandIn(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, ready_delay: float = 0.3, reconcile_delay: float = 0.3):
        super().__init__(("127.0.0.1", 0), Handler)
        self.ready_delay = ready_delay
        # Like the real controller, it sees a new generation a moment later: until then the
        # status (Ready=True of the previous one) is stale, and observedGeneration says so.
        self.reconcile_delay = reconcile_delay
        self.spec_changed_at: dict[tuple[str, str], float] = {}
        self.objects: dict[tuple[str, str], dict] = {}
        self.revisions: dict[tuple[str, str], list] = {}  # (name, template, created at)
        self.changed = threading.Condition()
        self.versions = itertools.count(1)
        self.manifests: list[tuple[str, dict]] = []  # (verb, object) of every valid write
        self.rejected: list[tuple[str, list[str]]] = []
        self.requests: list[tuple[str, str]] = []
        self.held = False
        self.failure: tuple[str, str] | None = None
        self.deleted: dict | None = None
        self.stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def kubeconfig(self, token: str = TOKEN) -> str:
        """A kubeconfig (YAML) whose cluster is this stand-in."""
        return (
            "apiVersion: v1\nkind: Config\ncurrent-context: standin\n"
            f"clusters:\n- name: standin\n  cluster:\n    server: {self.url}\n"
            "contexts:\n- name: standin\n  context:\n    cluster: standin\n    user: portal\n"
            f"users:\n- name: portal\n  user:\n    token: {token}\n"
        )

    # --- commands from tests ---

    def hold(self, held: bool = True) -> None:
        """Keep new revisions not ready (True) until released (False)."""
        self.held = held

    def fail(self, reason: str, message: str) -> None:
        """Make new revisions fail with this reason."""
        self.failure = (reason, message)

    def get(self, namespace: str, name: str) -> dict | None:
        with self.changed:
            return copy.deepcopy(self.objects.get((namespace, name)))

    # --- the store ---

    def touch(self, obj: dict) -> None:
        """Record a change (caller holds the lock) and wake the watchers."""
        obj["metadata"]["resourceVersion"] = str(next(self.versions))
        self.changed.notify_all()

    def create(self, namespace: str, body: dict) -> tuple[int, dict]:
        name = (body.get("metadata") or {}).get("name", "")
        with self.changed:
            if (namespace, name) in self.objects:
                return 409, status_body(
                    409,
                    "AlreadyExists",
                    f'inferenceservices.serving.kserve.io "{name}" already exists',
                )
            obj = copy.deepcopy(body)
            obj.pop("status", None)  # status is a subresource: writes to it are ignored
            obj["metadata"].update(
                namespace=namespace, generation=1, uid=f"uid-{name}",
                creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )  # fmt: skip
            problem = self.check("create", obj)
            if problem:
                return 422, problem
            obj["status"] = {}
            self.objects[(namespace, name)] = obj
            self.revisions[(namespace, name)] = []
            self.touch(obj)
            return 201, copy.deepcopy(obj)

    def patch(self, namespace: str, name: str, body: dict) -> tuple[int, dict]:
        with self.changed:
            current = self.objects.get((namespace, name))
            if current is None:
                return 404, not_found(name)
            body = {key: value for key, value in body.items() if key != "status"}
            merged = merge_patch(current, body)
            problem = self.check("patch", {k: v for k, v in merged.items() if k != "status"})
            if problem:
                return 422, problem
            if merged.get("spec") != current.get("spec"):
                merged["metadata"]["generation"] = current["metadata"]["generation"] + 1
                self.spec_changed_at[(namespace, name)] = time.monotonic()
            self.objects[(namespace, name)] = merged
            self.touch(merged)
            return 200, copy.deepcopy(merged)

    def delete(self, namespace: str, name: str) -> tuple[int, dict]:
        with self.changed:
            obj = self.objects.pop((namespace, name), None)
            if obj is None:
                return 404, not_found(name)
            self.deleted = obj  # watchers see it as DELETED
            self.touch(obj)
            return 200, status_body(200, "", "deleted")

    def check(self, verb: str, obj: dict) -> dict | None:
        errors = manifest_errors(obj)
        if errors:
            self.rejected.append((verb, errors))
            return status_body(422, "Invalid", "; ".join(errors))
        self.manifests.append((verb, copy.deepcopy(obj)))
        return None

    # --- the controller: KServe's part ---

    def run_controller(self) -> None:
        while not self.stopped.wait(0.05):
            with self.changed:
                for key, obj in list(self.objects.items()):
                    self.reconcile(key, obj)

    def reconcile(self, key, obj) -> None:
        now = time.monotonic()
        status = obj.setdefault("status", {})
        predictor = copy.deepcopy(obj["spec"]["predictor"])
        canary = predictor.pop("canaryTrafficPercent", None)
        revisions = self.revisions[key]
        before = json.dumps(status, sort_keys=True)
        if status.get("observedGeneration") != obj["metadata"]["generation"]:
            if now - self.spec_changed_at.get(key, 0) < self.reconcile_delay:
                return
            if not revisions or revisions[-1][1] != predictor:
                number = len(revisions) + 1
                revisions.append((f"{key[1]}-predictor-{number:05d}", predictor, now))
            status["observedGeneration"] = obj["metadata"]["generation"]
        name, _, created = revisions[-1]
        components = status.setdefault("components", {}).setdefault("predictor", {})
        components["latestCreatedRevision"] = name
        if components.get("latestReadyRevision") != name and not (self.failure or self.held):
            if now - created >= self.ready_delay:
                components["latestReadyRevision"] = name
        ready = components.get("latestReadyRevision")
        if ready:  # the route follows the latest *ready* revision, as Knative's does
            self.route(key, status, components, ready, canary, rolls_out=ready == name)
        if ready == name:
            self.set_ready(status, "True", "", "")
        elif self.failure:
            self.set_ready(status, "False", *self.failure)
        else:
            self.set_ready(status, "Unknown", "Deploying", f"Revision {name} is not ready.")
        if json.dumps(status, sort_keys=True) != before:
            self.touch(obj)

    def route(self, key, status, components, latest, canary, rolls_out) -> None:
        """Traffic as KServe's Knative reconciler splits it (ksvc_reconciler.go)."""
        rolled_out = components.get("latestRolledoutRevision")
        if canary is not None and rolled_out and rolled_out != latest:
            traffic = [{"latestRevision": True, "percent": canary, "revisionName": latest}]
            if canary < 100:
                traffic.append({
                    "latestRevision": False, "percent": 100 - canary,
                    "revisionName": rolled_out, "tag": "prev",
                })  # fmt: skip
        else:
            traffic = [{"latestRevision": True, "percent": 100, "revisionName": latest}]
            if rolls_out and rolled_out != latest:
                if rolled_out:
                    components["previousRolledoutRevision"] = rolled_out
                components["latestRolledoutRevision"] = latest
        url = f"http://{key[1]}.{key[0]}.example.com"
        components.update(traffic=traffic, url=f"http://{key[1]}-predictor.{key[0]}.example.com")
        status["url"] = url
        status["address"] = {"url": f"http://{key[1]}.{key[0]}.svc.cluster.local"}

    @staticmethod
    def set_ready(status, value, reason, message) -> None:
        conditions = []
        for kind in ("PredictorReady", "Ready"):
            item = {"type": kind, "status": value, "lastTransitionTime": "2026-01-01T00:00:00Z"}
            if reason:
                item.update(reason=reason, message=message)
            conditions.append(item)
        status["conditions"] = conditions

    # --- lifecycle ---

    def start(self) -> "KubeStandIn":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        threading.Thread(target=self.run_controller, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.shutdown()
        self.server_close()


def not_found(name: str) -> dict:
    return status_body(404, "NotFound", f'inferenceservices.serving.kserve.io "{name}" not found')


class Handler(http.server.BaseHTTPRequestHandler):
    server: KubeStandIn
    protocol_version = "HTTP/1.1"  # keep-alive, and chunked watch streams as the real one

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PATCH(self):
        self.route("PATCH")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, verb):
        parsed = urlparse(self.path)
        self.server.requests.append((verb, self.path))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.answer(401, status_body(401, "Unauthorized", "Unauthorized"))
        match = PATH.match(parsed.path)
        if not match:
            return self.answer(404, status_body(404, "NotFound", "the server could not find it"))
        namespace, name = match["ns"], match["name"]
        query = {key: values[0] for key, values in parse_qs(parsed.query).items()}
        if verb == "GET" and name is None:
            return self.list_or_watch(namespace, query)
        if verb == "GET":
            obj = self.server.get(namespace, name)
            return self.answer(200, obj) if obj else self.answer(404, not_found(name))
        if verb == "DELETE":
            return self.answer(*self.server.delete(namespace, name))
        body = self.body()
        if body is None:
            return self.answer(400, status_body(400, "BadRequest", "the body is not JSON"))
        if verb == "POST" and name is None:
            return self.answer(*self.server.create(namespace, body))
        if verb == "PATCH" and name is not None:
            if self.headers.get("Content-Type") != "application/merge-patch+json":
                return self.answer(
                    415, status_body(415, "UnsupportedMediaType", "merge patch only")
                )
            return self.answer(*self.server.patch(namespace, name, body))
        return self.answer(405, status_body(405, "MethodNotAllowed", verb))

    def list_or_watch(self, namespace, query):
        selected = query.get("fieldSelector", "").removeprefix("metadata.name=") or None
        if query.get("watch") not in ("true", "True", "1"):
            with self.server.changed:
                items = [
                    copy.deepcopy(obj)
                    for (ns, name), obj in self.server.objects.items()
                    if ns == namespace and selected in (None, name)
                ]
            return self.answer(200, {"kind": "InferenceServiceList", "items": items})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        deadline = time.monotonic() + float(query.get("timeoutSeconds", "30"))
        key = (namespace, selected)
        seen = None
        while time.monotonic() < deadline:
            with self.server.changed:
                obj = self.server.objects.get(key)
                deleted = self.server.deleted
                version = obj["metadata"]["resourceVersion"] if obj else None
                if version == seen:
                    self.server.changed.wait(max(0.0, min(0.5, deadline - time.monotonic())))
                    continue
                event = None
                if obj is not None:
                    event = {"type": "ADDED" if seen is None else "MODIFIED", "object": obj}
                elif seen is not None and deleted and deleted["metadata"]["name"] == selected:
                    event = {"type": "DELETED", "object": deleted}
                seen = version
                line = json.dumps(event).encode() + b"\n" if event else b""
            if line and not self.chunk(line):
                return
        self.chunk(b"")  # the last chunk: the watch ends

    def chunk(self, data: bytes) -> bool:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except OSError:
            return False
        return True

    def body(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def answer(self, code, body):
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass
