"""The model server's HTTP application: Starlette routes over one loaded model, run by
uvicorn (server.py), in each worker process when there are several.

    GET  /health   {"status": "ok", "model", "version", "uptime_seconds", "pid"}
    POST /predict  {"instances": [[...], ...]}
                   -> {"predictions": [...], "model", "version", "prediction_id", "logged"}
    GET  /metrics  Prometheus text exposition format
    /v2/...        the Open Inference Protocol (V2): health, model metadata, infer (v2.py)

Every prediction (/predict and V2 infer) gets a prediction id, in the body and in the
X-Prediction-ID header, by which feedback (the true label) is sent to the portal later. A
sample of the requests (PREDICTION_SAMPLE_RATE) goes to the prediction log
(prediction_log.py), off the request path; "logged" says whether this one did.

Errors are JSON {"error": "..."}: 400 for malformed input, 404/405 for unknown paths and
methods, 411/413 for bodies without a length or over MAX_BODY_BYTES, 500 when the model fails.
Only requests that uvicorn itself cannot parse (a broken request line or header) get its
plain-text 400.

No Django here: the server keeps serving while the portal and the worker restart.
"""

import math
import os
import time
import uuid
from dataclasses import dataclass, field
from functools import wraps

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from deployments.serving import logs, v2
from deployments.serving.loading import ArtifactError, InputError, predict
from deployments.serving.metrics import CONTENT_TYPE, Metrics

log = logs.configure()

MAX_BODY_BYTES = 10 * 1024 * 1024
# Bodies up to this size are parsed and predicted on the event loop, larger ones in a thread;
# see `answer`.
INLINE_BODY_BYTES = 64 * 1024
JSON = "application/json"
PREDICTION_ID_HEADER = "X-Prediction-ID"
ROUTES = {"/health": "GET", "/predict": "POST", "/metrics": "GET"}
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# A body the server will not read must not be parsed as the next request: close instead.
CLOSE = {"Connection": "close"}


@dataclass
class Served:
    """What the routes need: the model, its identity, the metrics and the prediction log."""

    model: object
    name: str
    version: int
    metrics: Metrics
    prediction_log: object = None  # a PredictionLog, or None (logging off)
    access_log: bool = False
    started: float = field(default_factory=time.monotonic)


class HTTPError(Exception):
    """Raised by a route to answer with `status` and {"error": message}."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def json_response(status: int, payload, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS), status, headers, JSON)


def error_response(status: int, message: str, headers: dict | None = None) -> Response:
    return json_response(status, {"error": message}, headers)


def new_prediction_id() -> str:
    """A fresh id for one response's predictions (32 hex digits)."""
    return uuid.uuid4().hex


def build(served: Served) -> Starlette:
    """The ASGI application answering for `served`."""
    routes = Routes(served)
    app = Starlette(
        routes=[
            Route("/health", routes.health, methods=["GET"]),
            Route("/predict", routes.predict, methods=["POST"]),
            Route("/metrics", routes.metrics, methods=["GET"]),
            # Every method: v2.handle says which one a V2 path accepts.
            Route("/v2", routes.v2, methods=METHODS),
            Route("/v2/{rest:path}", routes.v2, methods=METHODS),
        ],
        middleware=[Middleware(Observed, served=served)],
        exception_handlers={HTTPException: routing_error},
    )
    app.router.redirect_slashes = False  # /health/ is unknown, not a redirect
    return app


def json_errors(route):
    """Answer a route's HTTPError, and any other failure, with a JSON error."""

    @wraps(route)
    async def answered(*args) -> Response:  # (self, request): the routes are methods
        try:
            return await route(*args)
        except HTTPError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        except Exception:
            log.exception("model server: error answering a request")  # report, keep serving
            return error_response(500, "Internal server error; see the server log.")

    return answered


async def routing_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's router found no route (404) or not this method (405)."""
    path = request.scope["path"]
    if exc.status_code == 404:
        known = ", ".join(f"{method} {route}" for route, method in ROUTES.items())
        return error_response(404, f"No such path {path!r}; this server answers {known}.")
    if exc.status_code == 405:
        allowed = sorted((exc.headers or {}).get("Allow", "").split(", "))
        method = next((m for m in allowed if m != "HEAD"), "")
        return error_response(405, f"{path} accepts {method} only.", {"Allow": ", ".join(allowed)})
    return error_response(exc.status_code, str(exc.detail), exc.headers)


class Routes:
    """The endpoints, bound to what they serve."""

    def __init__(self, served: Served):
        self.served = served

    @json_errors
    async def health(self, request: Request) -> Response:
        served = self.served
        return json_response(
            200,
            {
                "status": "ok",
                "model": served.name,
                "version": served.version,
                "uptime_seconds": round(time.monotonic() - served.started, 3),
                "pid": os.getpid(),
            },
        )

    @json_errors
    async def metrics(self, request: Request) -> Response:
        return Response(self.served.metrics.render(), 200, media_type=CONTENT_TYPE)

    @json_errors
    async def predict(self, request: Request) -> Response:
        return await answer(self._predict, await read_body(request))

    @json_errors
    async def v2(self, request: Request) -> Response:
        method, path = request.method, request.scope["path"]
        body = await read_body(request) if method == "POST" and v2.is_infer(path) else b""
        return await answer(self._v2, body, method, path)

    def _predict(self, body: bytes) -> Response:
        payload = parse_json(body)
        if not isinstance(payload, dict):
            raise HTTPError(400, 'The body must be a JSON object: {"instances": [[...], ...]}.')
        if "instances" not in payload:
            raise HTTPError(400, 'The body has no "instances"; send {"instances": [[...], ...]}.')
        try:
            predictions = predict(self.served.model, payload["instances"])
        except InputError as exc:
            raise HTTPError(400, str(exc)) from exc
        except ArtifactError as exc:
            raise HTTPError(500, str(exc)) from exc
        if not finite(predictions):
            raise HTTPError(500, "The model returned NaN or infinity, which JSON cannot carry.")
        self.served.metrics.count_predictions(predictions)
        prediction_id = new_prediction_id()
        result = {
            "predictions": predictions,
            "model": self.served.name,
            "version": self.served.version,
            "prediction_id": prediction_id,
            "logged": self._log(prediction_id, payload["instances"], predictions),
        }
        return json_response(200, result, {PREDICTION_ID_HEADER: prediction_id})

    def _v2(self, body: bytes, method: str, path: str) -> Response:
        served = self.served
        sent = {}

        def read_json():
            sent["payload"] = parse_json(body)
            return sent["payload"]

        try:
            payload = v2.handle(method, path, served.model, served.name, served.version, read_json)
        except v2.V2Error as exc:
            raise HTTPError(exc.status, exc.message, dict(exc.headers)) from exc
        if not v2.is_infer(path):
            return json_response(200, payload)
        outputs = payload["outputs"][0]["data"]
        served.metrics.count_predictions(outputs)
        prediction_id = new_prediction_id()
        inputs = sent["payload"].get("inputs")
        logged = self._log(prediction_id, lambda: v2.rows_of(inputs), outputs)
        payload["parameters"] = {"prediction_id": prediction_id, "logged": logged}
        return json_response(200, payload, {PREDICTION_ID_HEADER: prediction_id})

    def _log(self, prediction_id: str, rows, predictions) -> bool:
        """Offer the request to the prediction log (a sample is kept); True if it was."""
        log_to = self.served.prediction_log
        return log_to is not None and log_to.maybe_log(prediction_id, rows, predictions)


async def answer(route, body: bytes, *args) -> Response:
    """Run the synchronous part of a prediction route: parse, predict, encode.

    Inline, on the event loop, for a body up to INLINE_BODY_BYTES: a prediction is CPU-bound
    and quick (~0.1-1 ms for a small model), the GIL lets only one thread run Python at a
    time anyway, and handing it to a thread costs more than it saves (measured with
    bench/model_server.py: the threadpool served fewer requests per CPU-second; see
    README, "make bench"). A larger body (a batch of hundreds of rows) goes to a thread, so
    that one long prediction does not hold up /health and the other connections."""
    if len(body) <= INLINE_BODY_BYTES:
        return route(body, *args)
    return await run_in_threadpool(route, body, *args)


async def read_body(request: Request) -> bytes:
    """The request's body, refused without reading it when it has no length or is too large."""
    headers = request.headers
    if "transfer-encoding" in headers:
        message = "Send the body with a Content-Length; chunked is not supported."
        raise HTTPError(411, message, CLOSE)
    length = int(headers.get("content-length") or 0)  # uvicorn refused a malformed one
    if length > MAX_BODY_BYTES:
        raise HTTPError(413, f"The body is {length} bytes; the limit is {MAX_BODY_BYTES}.", CLOSE)
    try:
        return await request.body()
    except ClientDisconnect as exc:
        raise HTTPError(400, "The body ended before its Content-Length.", CLOSE) from exc


def parse_json(body: bytes):
    if not body:
        raise HTTPError(400, 'The body is empty; send {"instances": [[...], ...]}.')
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPError(400, f"The body is not valid JSON: {exc}") from exc


def finite(value) -> bool:
    """Whether `value` (predictions: numbers, strings, lists, records) has no NaN or infinity,
    which JSON cannot carry (orjson would write them as null)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(finite(item) for item in value)
    if isinstance(value, dict):
        return all(finite(item) for item in value.values())
    return True


class Observed:
    """Counts every answered request in the metrics (404s and 405s too, hence around the
    router, as a plain ASGI wrapper: Starlette's BaseHTTPMiddleware costs far more), and
    writes the access log line with the caller's X-Request-ID."""

    def __init__(self, app, served: Served):
        self.app, self.served = app, served

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        path = scope["path"]
        label = "/v2/infer" if v2.is_infer(path) else path if path in ROUTES else "other"

        async def counted(message):
            if message["type"] == "http.response.start":
                status = message["status"]
                # Counted before sending, so a client that sees the response sees it counted.
                self.served.metrics.observe(label, status, time.perf_counter() - started)
                if self.served.access_log:
                    access_log(scope, status)
            await send(message)

        await self.app(scope, receive, counted)


def access_log(scope, status: int) -> None:
    headers = dict(scope["headers"])
    caller_id = headers.get(b"x-request-id", b"").decode("latin-1")
    line = log.bind(request_id=caller_id) if caller_id else log
    query = scope["query_string"].decode("latin-1")
    target = f"{scope['path']}?{query}" if query else scope["path"]
    client = scope.get("client")
    line.info(f"{scope['method']} {target} {status}", client=client[0] if client else "-",
              status=status)  # fmt: skip
