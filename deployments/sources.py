"""Where an artifact comes from, and laying it out on disk for validation and serving.

Sources (the URIs the MLflow client produces, plus plain URLs):
- `http(s)://…`: one file (a joblib pickle or a model archive), `deployments.artifacts`;
- `s3://bucket/key`: an object, or every object under the prefix (an MLflow model folder),
  through boto3 with ARTIFACT_S3_ENDPOINT_URL / _REGION / _ACCESS_KEY_ID / _SECRET_ACCESS_KEY,
  so MinIO or any S3-compatible store works;
- `mlflow-artifacts:/path`, `runs:/<run_id>/<path>` and `models:/<model_id>` (a logged
  model, what MLflow 3's `register_model` sends as the source): through the MLflow tracking
  server ARTIFACT_MLFLOW_TRACKING_URI ("our tracking server for runs, the portal as
  registry"); a run's path that holds no artifacts is looked up among the run's logged
  models (MLflow 3 keeps `log_model` output there);
- `file:///…`: only under ARTIFACT_FILE_ROOTS (empty by default: no local files).

Every remote fetch goes only where ARTIFACT_ALLOWED_NETWORKS allows (link-local never), stops
past ARTIFACT_MAX_BYTES and ARTIFACT_MAX_FILES, and past ARTIFACT_DOWNLOAD_TIMEOUT seconds in
all; the caller records the SHA-256 of what arrived (`loading.path_digest`). A fetch writes
into a new folder that takes its name only when complete: never half-written.
"""

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

import httpx
from django.conf import settings

from deployments import archives, artifacts
from deployments.serving import mlflow_model
from deployments.serving.loading import path_digest

SCHEMES = ("http", "https", "s3", "runs", "mlflow-artifacts", "models", "file")
MLFLOW_SCHEMES = ("s3", "runs", "mlflow-artifacts", "models", "file")
LOGGED_MODEL_ID = re.compile(r"^m-[0-9a-zA-Z]{1,64}$")
CHUNK = 1024 * 1024


class SourceError(ValueError):
    """The artifact cannot be fetched or laid out; the message says why."""


# --- at registration: shape and policy, no network --------------------------------------


def check_uri(uri: str) -> str | None:
    """Why `uri` may not be registered as an artifact source, or None (no DNS lookup)."""
    parsed = urlparse(uri)
    if parsed.scheme not in SCHEMES:
        return (
            "Give an http(s)://, s3://, runs:/, models:/, mlflow-artifacts:/ or file:// URI "
            "the workers can fetch the artifact from."
        )
    if parsed.scheme in ("http", "https"):
        if not parsed.netloc:
            return "The URL has no host."
        return artifacts.check_uri(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            return "Give the bucket and key: s3://bucket/path/to/model."
        return _check_s3_endpoint(resolve=False)
    if parsed.scheme in ("runs", "mlflow-artifacts", "models"):
        if parsed.scheme == "runs" and len(_run_parts(parsed)[0]) == 0:
            return "Give the run and the artifact path: runs:/<run_id>/model."
        if parsed.scheme == "models" and not LOGGED_MODEL_ID.match(_logged_model_id(parsed)):
            return (
                "Give a logged model's ID: models:/m-<id> (a registered version, "
                "models:/<name>/<version>, is not an artifact source)."
            )
        return _check_tracking_server(parsed, resolve=False)
    return _check_file(parsed)[1]


def looks_like_mlflow_model(uri: str, filename: str = "") -> bool:
    """True when the artifact is (most likely) an MLflow model: an archive, or a URI scheme
    that names a folder. Validation decides for sure, from the files."""
    name = filename or urlparse(uri).path
    if archives.is_archive_name(name):
        return True
    return bool(uri) and urlparse(uri).scheme in MLFLOW_SCHEMES and not _is_pickle_name(name)


def _is_pickle_name(name: str) -> bool:
    return name.lower().endswith((".joblib", ".pkl", ".pickle"))


def _policy():
    return artifacts.policy_from_settings()


def _check_s3_endpoint(*, resolve: bool) -> str | None:
    endpoint = settings.ARTIFACT_S3_ENDPOINT_URL
    if not endpoint:
        return None  # AWS itself: its names are checked when the worker connects
    error = _policy().check_url(endpoint, resolve=resolve)
    return f"ARTIFACT_S3_ENDPOINT_URL: {error}" if error else None


def _tracking_base(parsed) -> str:
    if parsed.scheme == "mlflow-artifacts" and parsed.netloc:
        return f"http://{parsed.netloc}"
    return (settings.ARTIFACT_MLFLOW_TRACKING_URI or "").rstrip("/")


def _check_tracking_server(parsed, *, resolve: bool) -> str | None:
    base = _tracking_base(parsed)
    if not base:
        return (
            f"{parsed.scheme}: URIs are resolved through an MLflow tracking server; "
            "set ARTIFACT_MLFLOW_TRACKING_URI to one."
        )
    return _policy().check_url(base, resolve=resolve)


def _check_file(parsed) -> tuple[Path | None, str | None]:
    roots = [Path(root).resolve() for root in settings.ARTIFACT_FILE_ROOTS]
    if not roots:
        return None, "file:// artifacts are off: ARTIFACT_FILE_ROOTS lists no folder."
    if parsed.netloc not in ("", "localhost"):
        return None, "A file:// URI names a path on the workers: file:///path/to/model."
    path = Path(unquote(parsed.path)).resolve()
    if not any(path.is_relative_to(root) for root in roots):
        return None, f"{path} is outside ARTIFACT_FILE_ROOTS."
    return path, None


def _logged_model_id(parsed) -> str:
    return (parsed.netloc + parsed.path).strip("/")


def _run_parts(parsed) -> tuple[str, str]:
    """(run_id, artifact path) of runs:/<run_id>/<path>."""
    parts = (parsed.netloc + parsed.path).strip("/").split("/", 1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


# --- at validation and deploy: fetching -------------------------------------------------


class Budget:
    """Bytes, files and time left for one fetch."""

    def __init__(self):
        self.max_bytes = settings.ARTIFACT_MAX_BYTES
        self.max_files = settings.ARTIFACT_MAX_FILES
        self.timeout = settings.ARTIFACT_DOWNLOAD_TIMEOUT
        self.deadline = time.monotonic() + self.timeout
        self.bytes = self.files = 0

    def add_file(self, name: str, size: int | None = None) -> None:
        """Count one more file; refuse when its declared `size` (with what arrived so far)
        passes the limit."""
        self.files += 1
        if self.files > self.max_files:
            raise SourceError(f"The artifact holds more than {self.max_files} files.")
        if size is not None and self.bytes + size > self.max_bytes:
            raise SourceError(
                f"The artifact is larger than {self.max_bytes} bytes (ARTIFACT_MAX_BYTES)."
            )

    def write(self, chunks, target: Path) -> None:
        with open(target, "xb") as handle:
            for chunk in chunks:
                self.bytes += len(chunk)
                if self.bytes > self.max_bytes:
                    raise SourceError(
                        f"The artifact is larger than {self.max_bytes} bytes (ARTIFACT_MAX_BYTES)."
                    )
                if time.monotonic() > self.deadline:
                    raise SourceError(
                        f"Fetching the artifact took longer than {self.timeout} s "
                        "(ARTIFACT_DOWNLOAD_TIMEOUT)."
                    )
                handle.write(chunk)


def fetch(uri: str, destination: Path) -> tuple[Path, str]:
    """Fetch the artifact at `uri` to the new path `destination` (a file, or a folder for
    a model folder); return it and the artifact URI a logged model's ID resolved to
    (`models:/m-<id>`; "" for other sources). Raises SourceError or artifacts.Refused."""
    parsed = urlparse(uri)
    error = check_uri(uri)
    if error:
        raise SourceError(error)
    partial = destination.with_name(destination.name + ".part")
    _remove(partial)
    resolved = ""
    try:
        budget = Budget()
        if parsed.scheme in ("http", "https"):
            _fetch_http(uri, partial, budget)
        elif parsed.scheme == "s3":
            _fetch_s3(parsed, partial, budget)
        elif parsed.scheme == "file":
            _fetch_file(parsed, partial, budget)
        else:
            resolved = MlflowArtifacts(_tracking_base(parsed)).fetch(parsed, partial, budget)
        partial.rename(destination)
    except httpx.HTTPError as exc:
        _remove(partial)
        raise SourceError(f"Could not download {uri}: {exc}") from exc
    except BaseException:
        _remove(partial)
        raise
    return destination, resolved


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fetch_http(uri: str, target: Path, budget: Budget) -> None:
    budget.add_file(uri)
    with artifacts.client(budget.timeout) as http, http.stream("GET", uri) as response:
        if response.status_code != 200:
            raise SourceError(f"Downloading {uri} answered HTTP {response.status_code}.")
        budget.write(response.iter_bytes(CHUNK), target)


def _member(root: Path, relative: str) -> Path:
    try:
        target = archives.safe_member_path(root, relative)
    except archives.ArchiveError as exc:
        raise SourceError(str(exc).replace("archive member", "artifact file")) from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


# s3 ------------------------------------------------------------------------------------


def boto3_session(access_key: str | None, secret_key: str | None):
    """A boto3 session with these credentials, else the environment's or ~/.aws, never
    an instance metadata service's (a link-local endpoint the network policy refuses)."""
    import boto3
    import botocore.session

    session = botocore.session.get_session()
    resolver = session.get_component("credential_provider")
    for name in ("iam-role", "container-role"):  # link-local metadata endpoints
        if resolver.get_provider(name) is not None:
            resolver.remove(name)
    if access_key or secret_key:
        session.set_credentials(access_key, secret_key)
    return boto3.session.Session(botocore_session=session)


def s3_client(timeout: float):
    """A boto3 S3 client from the ARTIFACT_S3_* settings. Credentials come from the settings,
    else from the environment or ~/.aws, never from an instance metadata service."""
    from botocore.config import Config

    endpoint = settings.ARTIFACT_S3_ENDPOINT_URL or None
    session = boto3_session(
        settings.ARTIFACT_S3_ACCESS_KEY_ID or None, settings.ARTIFACT_S3_SECRET_ACCESS_KEY or None
    )
    return session.client(
        "s3",
        endpoint_url=endpoint,
        region_name=settings.ARTIFACT_S3_REGION or None,
        config=Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": 2},
            s3={"addressing_style": "path" if endpoint else "auto"},
        ),
    )


def _fetch_s3(parsed, target: Path, budget: Budget) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    client = s3_client(budget.timeout)
    error = _policy().check_url(client.meta.endpoint_url, resolve=True)
    if error:
        raise artifacts.Refused(f"S3 endpoint {client.meta.endpoint_url}: {error}")
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    try:
        objects = _s3_objects(client, bucket, key, budget)
        if objects is None:  # one object
            _s3_download(client, bucket, key, target, budget)
            return
        target.mkdir()
        for relative, object_key in objects:
            _s3_download(client, bucket, object_key, _member(target, relative), budget)
    except (BotoCoreError, ClientError) as exc:
        raise SourceError(f"Could not fetch s3://{bucket}/{key}: {exc}") from exc


def _s3_objects(client, bucket, key, budget) -> list[tuple[str, str]] | None:
    """None when `key` is one object; else (relative path, key) of every object below it."""
    from botocore.exceptions import ClientError

    if key and not key.endswith("/"):
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        else:
            budget.add_file(key, head["ContentLength"])
            return None
    prefix = key.rstrip("/") + "/" if key else ""
    found, declared = [], 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith("/"):
                continue  # a folder marker
            declared += item["Size"]  # checked now, counted again while downloading
            budget.add_file(item["Key"], declared)
            found.append((item["Key"][len(prefix) :], item["Key"]))
    if not found:
        raise SourceError(f"s3://{bucket}/{key} holds no object.")
    return found


def _s3_download(client, bucket, key, target: Path, budget: Budget) -> None:
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        budget.write(iter(lambda: body.read(CHUNK), b""), target)
    finally:
        body.close()


# file:// -------------------------------------------------------------------------------


def _fetch_file(parsed, target: Path, budget: Budget) -> None:
    path, error = _check_file(parsed)
    if error:
        raise SourceError(error)
    if not path.exists():
        raise SourceError(f"{path} does not exist.")
    if path.is_file():
        budget.add_file(path.name, path.stat().st_size)
        with open(path, "rb") as source:
            budget.write(iter(lambda: source.read(CHUNK), b""), target)
        return
    target.mkdir()
    for file in sorted(path.rglob("*")):
        real = file.resolve()
        if not real.is_relative_to(path):
            raise SourceError(f"{file} links outside {path}.")
        if real.is_file():
            budget.add_file(file.name, real.stat().st_size)
            with open(real, "rb") as source:
                budget.write(
                    iter(lambda s=source: s.read(CHUNK), b""),
                    _member(target, file.relative_to(path).as_posix()),
                )


# MLflow tracking server -----------------------------------------------------------------


@dataclass
class MlflowArtifacts:
    """Reads runs and artifacts from an MLflow tracking server's REST API (its artifact
    proxy, `mlflow server --serve-artifacts`), with the policy's HTTP client."""

    base: str

    def fetch(self, parsed, target: Path, budget: Budget) -> str:
        """Download what `parsed` names into `target`. Returns a logged model's artifact
        URI for `models:/m-<id>` (what an MLflow server records as the version's storage
        location and answers as its download URI), else ""."""
        with artifacts.client(budget.timeout) as http:
            self.http = http
            headers = {}
            if settings.ARTIFACT_MLFLOW_TRACKING_TOKEN:
                headers["Authorization"] = f"Bearer {settings.ARTIFACT_MLFLOW_TRACKING_TOKEN}"
            self.http.headers.update(headers)
            resolved = ""
            if parsed.scheme == "runs":
                location = self.run_location(*_run_parts(parsed))
            elif parsed.scheme == "models":
                resolved = self.logged_model_uri(_logged_model_id(parsed))
                location = self.artifacts_path(resolved)
            else:
                location = (parsed.path or "").strip("/")
            self.download_tree(location, target, budget)
        return resolved

    def run_location(self, run_id: str, path: str) -> str:
        """The mlflow-artifacts path of `path` in run `run_id` (or of the run's logged
        model named `path`, where MLflow 3 puts `log_model` output)."""
        run = self.get_json("/api/2.0/mlflow/runs/get", params={"run_id": run_id})["run"]
        base = self.artifacts_path(run["info"]["artifact_uri"])
        location = f"{base}/{path}".rstrip("/")
        if not path or self.list(location) or self.is_file(location):
            return location
        search = {
            "experiment_ids": [run["info"]["experiment_id"]],
            "filter": f"source_run_id = '{run_id}' AND name = '{path}'",
        }
        models = self.post_json("/api/2.0/mlflow/logged-models/search", search).get("models")
        if not models:
            raise SourceError(f"Run {run_id} has no artifact or logged model named {path!r}.")
        return self.artifacts_path(models[0]["info"]["artifact_uri"])

    def logged_model_uri(self, model_id: str) -> str:
        """The artifact URI of the logged model `model_id`, as the tracking server keeps it."""
        answer = self.get_json(f"/api/2.0/mlflow/logged-models/{quote(model_id)}", params={})
        return answer["model"]["info"]["artifact_uri"]

    def artifacts_path(self, uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme != "mlflow-artifacts":
            raise SourceError(
                f"The tracking server keeps this run's artifacts at {uri}; the portal fetches "
                "runs:/ only through the server's artifact proxy (mlflow-artifacts:/)."
            )
        return parsed.path.strip("/")

    def list(self, path: str) -> list[dict]:
        answer = self.get_json("/api/2.0/mlflow-artifacts/artifacts", params={"path": path})
        return answer.get("files") or []

    def is_file(self, path: str) -> bool:
        url = f"{self.base}/api/2.0/mlflow-artifacts/artifacts/{quote(path)}"
        with self.http.stream("GET", url) as response:
            return response.status_code == 200

    def download_tree(self, path: str, target: Path, budget: Budget) -> None:
        entries = self.list(path)
        if not entries:
            self.download(path, target, budget)
            return
        target.mkdir()
        pending = [("", entry) for entry in entries]
        while pending:
            prefix, entry = pending.pop()
            relative = f"{prefix}{entry['path'].rsplit('/', 1)[-1]}"
            if entry.get("is_dir"):
                pending += [(f"{relative}/", e) for e in self.list(f"{path}/{relative}")]
                continue
            budget.add_file(relative, int(entry.get("file_size") or 0))
            self.download(f"{path}/{relative}", _member(target, relative), budget)

    def download(self, path: str, target: Path, budget: Budget) -> None:
        url = f"{self.base}/api/2.0/mlflow-artifacts/artifacts/{quote(path)}"
        with self.http.stream("GET", url) as response:
            if response.status_code != 200:
                raise SourceError(
                    f"The tracking server has no artifact at {path} (HTTP {response.status_code})."
                )
            budget.write(response.iter_bytes(CHUNK), target)

    def get_json(self, path: str, params: dict) -> dict:
        return self._answer(self.http.get(f"{self.base}{path}", params=params))

    def post_json(self, path: str, body: dict) -> dict:
        return self._answer(self.http.post(f"{self.base}{path}", json=body))

    def _answer(self, response) -> dict:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200:
            message = body.get("message") if isinstance(body, dict) else None
            raise SourceError(
                f"The MLflow tracking server answered HTTP {response.status_code}"
                + (f": {message}" if message else ".")
            )
        return body if isinstance(body, dict) else {}


# --- laying out a version's artifact -----------------------------------------------------


@dataclass
class LocalArtifact:
    """A version's artifact on disk: `path` to load (a joblib file or an MLflow model
    folder), its `flavor`, the SHA-256 and size of what was uploaded or fetched, and the
    artifact URI its `models:/m-<id>` source resolved to ("" for other sources)."""

    path: Path
    flavor: str
    sha256: str
    size: int
    storage_location: str = ""


def lay_out(source: Path, folder: Path, storage_location: str = "") -> LocalArtifact:
    """From an uploaded or fetched artifact at `source`, return what to load: an archive
    is unpacked into `folder`/model (safely, within the limits), a folder must hold an
    MLflow model, a plain file is a joblib pickle. `storage_location` is passed through."""
    digest, size = path_digest(source)
    path = source
    if archives.is_archive(source):
        try:
            path = archives.extract(
                source,
                folder / "model",
                max_bytes=settings.ARTIFACT_MAX_EXTRACTED_BYTES,
                max_files=settings.ARTIFACT_MAX_FILES,
            )
        except archives.ArchiveError as exc:
            raise SourceError(str(exc)) from exc
    if path.is_dir():
        root = mlflow_model.find_root(path)
        if root is None:
            raise SourceError(
                "The artifact is a folder without an MLmodel file: not an MLflow model."
            )
        return LocalArtifact(root, "mlflow", digest, size, storage_location)
    return LocalArtifact(path, "sklearn", digest, size, storage_location)


def local_copy(version, folder: Path) -> LocalArtifact:
    """Lay out `version`'s artifact (its upload, or a fetch of its URI) under the existing
    empty `folder`; return what to load. Raises SourceError or artifacts.Refused."""
    storage_location = ""
    if version.artifact:
        try:
            source = Path(version.artifact.path)
        except NotImplementedError:  # remote storage (ARTIFACT_STORAGE=s3): copy it here first
            source = folder / "upload"
            _copy_upload(version.artifact, source)
    else:
        source, storage_location = fetch(version.artifact_uri, folder / "fetched")
    return lay_out(source, folder, storage_location)


def _copy_upload(field_file, target: Path) -> None:
    try:
        with field_file.open("rb") as stored, open(target, "xb") as handle:
            shutil.copyfileobj(stored, handle, CHUNK)
    except Exception as exc:  # boto3, network and OS errors alike: the artifact is unreadable
        message = f"Could not read {field_file.name} from the artifact storage: {exc}"
        raise SourceError(message) from exc
