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

A fetched artifact is kept per SHA-256 in the node's temp folder, so a replica Serve
restarts (after a crash) loads it again even when the signed URL has expired meanwhile.
"""

import asyncio
import json
import os
import shutil
import tempfile
from pathlib import Path

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from deployments.serving import fetching, v2
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
        path = relative_path(request.scope)
        try:
            if path == "/health":
                return JSONResponse(self.health())
            if path == "/predict":
                if request.method != "POST":
                    raise v2.V2Error(405, "/predict accepts POST only.", (("Allow", "POST"),))
                payload = await read_json(request)
                return JSONResponse(await asyncio.to_thread(self.predict, payload))
            if path == "/v2" or path.startswith("/v2/"):
                body = await request.body() if request.method == "POST" else b""
                answer = await asyncio.to_thread(
                    v2.handle, request.method, path, self.model, self.name, self.version,
                    lambda: parse_json(body),
                )  # fmt: skip
                return JSONResponse(answer)
            raise v2.V2Error(404, f"No such path {path!r}; this server answers /health, "
                                  "POST /predict and /v2/.")  # fmt: skip
        except v2.V2Error as exc:
            return JSONResponse({"error": exc.message}, exc.status, dict(exc.headers))

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


async def read_json(request: Request):
    body = await request.body()
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


def build(args: dict):
    """The application Serve builds from the config's `args` (one model version)."""
    return ModelServer.bind(
        artifact_url=args["artifact_url"],
        sha256=args.get("sha256", ""),
        flavor=args["flavor"],
        model=args["model"],
        version=args["version"],
        deployment=args["deployment"],
    )
