"""The BASELINE of bench/model_server.py: the model server as it was on http.server, kept
verbatim (but for this paragraph) only to be measured against deployments/serving/server.py
(uvicorn + Starlette), which replaced it. Nothing in the product starts or imports it.

    python -m bench.baseline_model_server --artifact PATH --flavor sklearn|mlflow \\
        --model NAME --version N --port PORT [--host 127.0.0.1] [--access-log] \\
        [--deployment-id ID --version-id ID]

It loads the artifact once (a joblib pickle, or an MLflow model folder with mlflow.pyfunc),
then answers over HTTP (JSON unless said otherwise):

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

It deliberately imports neither Django nor anything of the portal but `loading`, so it starts
fast and keeps serving while the portal and the worker restart.

Exit status: 0 after SIGTERM or SIGINT, 2 when the artifact cannot be loaded (or the arguments
are wrong), 3 when it cannot listen on the address; the reason is printed on stderr.
"""

import argparse
import json
import os
import signal
import socketserver
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from deployments.serving import logs, prediction_log, v2
from deployments.serving.loading import ArtifactError, InputError, load_model, predict
from deployments.serving.metrics import CONTENT_TYPE, Metrics

log = logs.configure()

MAX_BODY_BYTES = 10 * 1024 * 1024
# Each keep-alive connection holds a thread; close connections idle for this long.
IDLE_TIMEOUT_SECONDS = 60
EXIT_ARTIFACT = 2
EXIT_LISTEN = 3
JSON = "application/json"
PREDICTION_ID_HEADER = "X-Prediction-ID"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


class HTTPError(Exception):
    """Raised by a route to answer with `status` and {"error": message}."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def json_response(status: int, payload, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    # allow_nan=False: NaN is not JSON, and clients would fail on it far from the cause.
    body = json.dumps(payload, allow_nan=False).encode()
    return Response(status, body, JSON, headers)


class ModelServer(ThreadingHTTPServer):
    """An HTTP server holding one loaded model, its identity and its metrics."""

    # Handler threads must not keep the process alive after shutdown: idle keep-alive
    # connections would otherwise block the exit for IDLE_TIMEOUT_SECONDS.
    daemon_threads = True

    def __init__(self, address, model, name: str, version: int, access_log: bool = False,
                 predictions_to=None):  # fmt: skip
        self.model = model
        self.model_name = name
        self.model_version = version
        self.access_log = access_log
        self.metrics = Metrics(name, version)  # see deployments.serving.metrics
        # Where sampled requests go: a PredictionLog, or None (logging off).
        self.prediction_log = predictions_to
        super().__init__(address, ModelRequestHandler)
        self.started = time.monotonic()

    def server_bind(self):
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can take seconds and
        # whose result is never used here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def uptime(self) -> float:
        return time.monotonic() - self.started


class ModelRequestHandler(BaseHTTPRequestHandler):
    """Routes requests to /health, /predict and /metrics; everything else is a JSON error."""

    protocol_version = "HTTP/1.1"
    server_version = "model-server/1"
    timeout = IDLE_TIMEOUT_SECONDS
    server: ModelServer
    # path -> (method, name of the route method)
    ROUTES = {
        "/health": ("GET", "_health"),
        "/predict": ("POST", "_predict"),
        "/metrics": ("GET", "_metrics"),
    }

    def _handle(self) -> None:
        """Answer one request with any method: route it, count it, send the response."""
        started = time.perf_counter()
        self._body_read = False
        path = urlsplit(self.path).path
        try:
            response = self._route(path)
        except HTTPError as exc:
            response = json_response(exc.status, {"error": exc.message}, exc.headers)
        except Exception:
            log.exception("model server: error answering a request")  # report, keep serving
            response = json_response(500, {"error": "Internal server error; see the server log."})
        label = "/v2/infer" if v2.is_infer(path) else path if path in self.ROUTES else "other"
        # Counted before sending, so a client that sees the response also sees it counted.
        self.server.metrics.observe(label, response.status, time.perf_counter() - started)
        self._send(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def _route(self, path: str) -> Response:
        if path == "/v2" or path.startswith("/v2/"):
            return self._v2(path)
        if path not in self.ROUTES:
            known = ", ".join(f"{method} {route}" for route, (method, _) in self.ROUTES.items())
            raise HTTPError(404, f"No such path {path!r}; this server answers {known}.")
        method, route = self.ROUTES[path]
        if self.command != method:
            raise HTTPError(405, f"{path} accepts {method} only.", (("Allow", method),))
        return getattr(self, route)()

    def _health(self) -> Response:
        return json_response(
            200,
            {
                "status": "ok",
                "model": self.server.model_name,
                "version": self.server.model_version,
                "uptime_seconds": round(self.server.uptime(), 3),
                "pid": os.getpid(),
            },
        )

    def _metrics(self) -> Response:
        return Response(200, self.server.metrics.render(), CONTENT_TYPE)

    def _predict(self) -> Response:
        payload = self._read_json()
        if not isinstance(payload, dict):
            raise HTTPError(400, 'The body must be a JSON object: {"instances": [[...], ...]}.')
        if "instances" not in payload:
            raise HTTPError(400, 'The body has no "instances"; send {"instances": [[...], ...]}.')
        try:
            predictions = predict(self.server.model, payload["instances"])
        except InputError as exc:
            raise HTTPError(400, str(exc)) from exc
        except ArtifactError as exc:
            raise HTTPError(500, str(exc)) from exc
        self.server.metrics.count_predictions(predictions)
        prediction_id = new_prediction_id()
        result = {
            "predictions": predictions,
            "model": self.server.model_name,
            "version": self.server.model_version,
            "prediction_id": prediction_id,
            "logged": self._log(prediction_id, payload["instances"], predictions),
        }
        try:
            return json_response(200, result, ((PREDICTION_ID_HEADER, prediction_id),))
        except ValueError as exc:
            raise HTTPError(
                500, "The model returned NaN or infinity, which JSON cannot carry."
            ) from exc

    def _log(self, prediction_id: str, rows, predictions) -> bool:
        """Offer the request to the prediction log (a sample is kept); True if it was."""
        log_to = self.server.prediction_log
        return log_to is not None and log_to.maybe_log(prediction_id, rows, predictions)

    def _v2(self, path: str) -> Response:
        server = self.server
        try:
            payload = v2.handle(
                self.command, path, server.model, server.model_name, server.model_version,
                self._read_v2_json,
            )  # fmt: skip
            if not v2.is_infer(path):
                return json_response(200, payload)
            outputs = payload["outputs"][0]["data"]
            self.server.metrics.count_predictions(outputs)
            prediction_id = new_prediction_id()
            inputs = self._v2_inputs
            logged = self._log(prediction_id, lambda: v2.rows_of(inputs), outputs)
            payload["parameters"] = {"prediction_id": prediction_id, "logged": logged}
            return json_response(200, payload, ((PREDICTION_ID_HEADER, prediction_id),))
        except v2.V2Error as exc:
            raise HTTPError(exc.status, exc.message, exc.headers) from exc

    def _read_v2_json(self):
        payload = self._read_json()
        self._v2_inputs = payload.get("inputs") if isinstance(payload, dict) else None
        return payload

    def _read_json(self):
        body = self._read_body()
        if not body:
            raise HTTPError(400, 'The body is empty; send {"instances": [[...], ...]}.')
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError too
            raise HTTPError(400, f"The body is not valid JSON: {exc}") from exc

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise HTTPError(411, "Send the body with a Content-Length; chunked is not supported.")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            raise HTTPError(400, "The Content-Length header is not a valid length.")
        if length > MAX_BODY_BYTES:
            raise HTTPError(413, f"The body is {length} bytes; the limit is {MAX_BODY_BYTES}.")
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) < length:
            raise HTTPError(400, f"The body ended after {len(body)} of {length} bytes.")
        return body

    def _body_left_unread(self) -> bool:
        if self._body_read:
            return False
        length = self.headers.get("Content-Length", "0").strip()
        return bool(self.headers.get("Transfer-Encoding")) or length not in ("", "0")

    def _send(self, response: Response, close: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        # An unread body would be parsed as the next request on this connection: drop it.
        if close or self._body_left_unread():
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def send_error(self, code, message=None, explain=None):
        """Answer protocol errors found by http.server (bad request line, unknown method)."""
        response = json_response(code, {"error": message or HTTPStatus(code).phrase})
        self.server.metrics.observe("other", code, 0.0)
        self._send(response, close=True)  # the request could not be parsed: don't reuse

    def log_request(self, code="-", size="-"):
        if self.server.access_log:
            caller_id = self.headers.get("X-Request-ID") if self.headers else None
            line = log.bind(request_id=caller_id) if caller_id else log
            line.info(
                f"{self.command} {self.path} {code}",
                client=self.address_string(),
                status=int(code) if str(code).isdigit() else code,
            )

    def log_error(self, format, *args):
        # Mostly idle keep-alive connections timing out: noise unless asked for.
        if self.server.access_log:
            super().log_error(format, *args)

    def log_message(self, format, *args):
        log.warning(format % args, client=self.address_string())


def new_prediction_id() -> str:
    """A fresh id for one response's predictions (32 hex digits)."""
    return uuid.uuid4().hex


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.serving.server",
        description="Serve one model artifact over HTTP (/health, /predict, /metrics).",
    )
    parser.add_argument("--artifact", required=True, help="path of the model artifact")
    parser.add_argument("--flavor", required=True, help="how to load it: sklearn or mlflow")
    parser.add_argument("--model", required=True, help="registered model name, for reports")
    parser.add_argument("--version", required=True, type=int, help="model version number")
    parser.add_argument("--port", required=True, type=int, help="TCP port; 0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--deployment-id", type=int, help="the portal's deployment, for the log")
    parser.add_argument("--version-id", type=int, help="the portal's model version, for the log")
    return parser.parse_args(argv)


def stop_on_signals(server: ModelServer) -> None:
    """Make SIGTERM and SIGINT shut the server down cleanly, so that main() returns 0."""

    def stop(signum, frame):
        # shutdown() waits for serve_forever() to return, and serve_forever() runs in this very
        # thread (signal handlers run in the main thread): calling it here would deadlock.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def main(argv=None) -> int:
    """Load the model, serve until SIGTERM/SIGINT; return the process exit status."""
    args = parse_args(argv)
    try:
        model = load_model(args.artifact, args.flavor)
    except ArtifactError as exc:
        log.error(f"model server: cannot load {args.artifact}: {exc}")
        return EXIT_ARTIFACT
    try:
        server = ModelServer(
            (args.host, args.port), model, args.model, args.version, args.access_log
        )
    except OSError as exc:
        log.error(f"model server: cannot listen on {args.host}:{args.port}: {exc}")
        return EXIT_LISTEN
    server.prediction_log = prediction_log.from_environment(
        os.environ, args.deployment_id, args.version_id, server.metrics.count_logged
    )
    stop_on_signals(server)
    log.info(
        f"model server: serving {args.model} v{args.version} on "
        f"http://{args.host}:{server.server_port} (pid {os.getpid()})",
        model=args.model,
        version=args.version,
        port=server.server_port,
    )
    try:
        # shutdown() is noticed only between polls; 0.1 s (not 0.5) makes a redeploy quicker.
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        server.prediction_log.flush(timeout=2.0)  # what was sampled before the stop
    log.info("model server: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
