"""The Ray Serve application of the `ray` deploy backend (deployments/backends/ray_serve.py).

The backend submits it to a cluster's Serve REST API (`PUT /api/serve/applications/`, as
`serve deploy` does) with `import_path: deployments.serving.ray_app:build` and `args`
naming one model version; the portal itself never imports this module (nor Ray).

Each replica fetches the version's artifact from its signed URL (`fetching.download`),
checks its SHA-256 against the one measured on validation, loads it with the very code
validation uses (`loading.load_model`), and answers under the application's route prefix:

    GET  /health   {"status": "ok", "model", "version", "deployment", "replica_pid"}
    POST /predict  {"instances": [[...], ...]} -> {"predictions": [...], "model", "version"}
    /v2/...        the Open Inference Protocol (V2), as the local model server (v2.py)

During a canary the `args` also name the candidate (`args["canary"]`): the application
then holds the stable version's ModelServer, the candidate's (CanaryModelServer) and a
CanaryRouter as its ingress, which sends each request to one of them by the weight in its
`user_config` (canary_split.py says how, and which paths it answers itself).

A fetched artifact is kept per SHA-256 in the node's temp folder, so a replica Serve
restarts (after a crash) loads it again even when the signed URL has expired meanwhile.
"""

import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from deployments.serving import canary_split, fetching, metrics, v2
from deployments.serving.loading import (
    ArtifactError,
    InputError,
    load_model,
    predict,
)

CACHE_DIR = Path(tempfile.gettempdir()) / "mlops-serve-artifacts"
MAX_BODY_BYTES = 10 * 1024 * 1024


def local_artifact(url: str, sha256: str) -> Path:
    """The artifact on this node: fetched once per SHA-256 (verified), then reused."""
    if sha256:
        kept = CACHE_DIR / sha256
        if kept.exists():
            return next(kept.iterdir())
    staging = Path(tempfile.mkdtemp(prefix="fetch-", dir=_cache_dir()))
    try:
        path = fetching.download(url, staging, sha256=sha256)
        for leftover in staging.iterdir():
            if leftover != path:  # the bundle's archive, once unpacked: one entry is cached
                leftover.unlink()
        if not sha256:
            return path
        kept = CACHE_DIR / sha256
        try:
            staging.rename(kept)  # atomic: a replica never sees half a cached artifact
        except OSError:  # another replica of this node cached it first
            shutil.rmtree(staging, ignore_errors=True)
        return next(kept.iterdir())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _cache_dir() -> Path:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    return CACHE_DIR


@serve.deployment(name="ModelServer")
class ModelServer:
    """One replica: one loaded model version, answering /health, /predict and /v2."""

    def __init__(self, artifact_url: str, sha256: str, flavor: str, model: str, version: int,
                 deployment: int):  # fmt: skip
        self.model = load_model(local_artifact(artifact_url, sha256), flavor)
        self.name, self.version, self.deployment = model, int(version), int(deployment)

    async def __call__(self, request: Request) -> JSONResponse:
        body = await request.body() if request.method == "POST" else b""
        status, payload, headers = await self.answer(
            request.method, relative_path(request.scope), body
        )
        return JSONResponse(payload, status, headers)

    async def answer(self, method: str, path: str, body: bytes) -> tuple[int, dict, dict]:
        """(status, JSON body, headers) for one request: what `__call__` sends, and what
        the canary router (CanaryRouter) asks through a handle."""
        try:
            if path == "/health":
                return 200, self.health(), {}
            if path == "/predict":
                if method != "POST":
                    raise v2.V2Error(405, "/predict accepts POST only.", (("Allow", "POST"),))
                payload = read_json(body)
                return 200, await asyncio.to_thread(self.predict, payload), {}
            if path == "/v2" or path.startswith("/v2/"):
                answer = await asyncio.to_thread(
                    v2.handle, method, path, self.model, self.name, self.version,
                    lambda: parse_json(body),
                )  # fmt: skip
                return 200, answer, {}
            raise v2.V2Error(404, f"No such path {path!r}; this server answers /health, "
                                  "POST /predict and /v2/.")  # fmt: skip
        except v2.V2Error as exc:
            return exc.status, {"error": exc.message}, dict(exc.headers)

    def health(self) -> dict:
        return {
            "status": "ok",
            "model": self.name,
            "version": self.version,
            "deployment": self.deployment,
            "replica_pid": os.getpid(),
        }

    def predict(self, payload) -> dict:
        if not isinstance(payload, dict) or "instances" not in payload:
            raise v2.V2Error(400, 'The body must be a JSON object: {"instances": [[...], ...]}.')
        try:
            predictions = predict(self.model, payload["instances"])
        except InputError as exc:
            raise v2.V2Error(400, str(exc)) from exc
        except ArtifactError as exc:
            raise v2.V2Error(500, str(exc)) from exc
        return {"predictions": predictions, "model": self.name, "version": self.version}


def relative_path(scope: dict) -> str:
    """The request's path under the application's route prefix (Serve passes the prefix
    as the ASGI root_path)."""
    path, root = scope.get("path", "/"), scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return "/" + path.lstrip("/")


def read_json(body: bytes):
    if len(body) > MAX_BODY_BYTES:
        raise v2.V2Error(413, f"The body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}.")
    return parse_json(body)


def parse_json(body: bytes):
    if not body:
        raise v2.V2Error(400, 'The body is empty; send {"instances": [[...], ...]}.')
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise v2.V2Error(400, f"The body is not valid JSON: {exc}") from exc


@serve.deployment(name=canary_split.ROUTER_DEPLOYMENT, num_replicas=1)
class CanaryRouter:
    """The ingress while a canary runs: sends each request to the stable or the canary
    deployment by the weight in its `user_config`, and counts each side's answers.

    One replica: its counters are the whole application's, so the analysis reads one
    /-/metrics/<side> and compares like with like (latency is timed here, handle hop
    included, for both sides alike). A weight change re-submits the config with a new
    `user_config` only: Serve calls `reconfigure` on the running replica, and neither the
    model replicas nor the counters restart."""

    def __init__(self, stable, canary, identities: dict):
        self.handles = {canary_split.STABLE: stable, canary_split.CANARY: canary}
        self.router = canary_split.Router({side: tuple(who) for side, who in identities.items()})

    def reconfigure(self, config: dict) -> None:
        self.router.reconfigure(config)

    async def __call__(self, request: Request) -> Response:
        path = relative_path(request.scope)
        own = self.router.own_answer(path)
        if own is not None:
            status, payload = own
            if isinstance(payload, bytes):
                return Response(payload, status, media_type=metrics.CONTENT_TYPE)
            return JSONResponse(payload, status)
        side = self.router.next_side()
        body = await request.body() if request.method == "POST" else b""
        started = time.perf_counter()
        try:
            status, payload, headers = await self.handles[side].answer.remote(
                request.method, path, body
            )
        except Exception as exc:  # a replica that died or raised: the side answered nothing
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
            status, payload, headers = 502, {"error": f"The {side} version failed: {reason}"}, {}
        self.router.observe(side, path, status, started)
        return JSONResponse(payload, status, {**headers, canary_split.SERVED_BY: side})


def model_server_args(args: dict) -> dict:
    """The ModelServer's constructor arguments from one version's part of the `args`."""
    return {
        "artifact_url": args["artifact_url"],
        "sha256": args.get("sha256", ""),
        "flavor": args["flavor"],
        "model": args["model"],
        "version": args["version"],
        "deployment": args["deployment"],
    }


def build(args: dict):
    """The application Serve builds from the config's `args`: one model version, or during
    a canary (`args["canary"]` naming the candidate) both behind a CanaryRouter."""
    stable = ModelServer.bind(**model_server_args(args))
    if not args.get("canary"):
        return stable
    canary = ModelServer.options(name=canary_split.CANARY_DEPLOYMENT).bind(
        **model_server_args(args["canary"])
    )
    identities = {
        side: (part["model"], part["version"], part["deployment"])
        for side, part in ((canary_split.STABLE, args), (canary_split.CANARY, args["canary"]))
    }
    return CanaryRouter.bind(stable, canary, identities)
