"""Where uploaded artifacts live, and links a backend running elsewhere can fetch them by.

ARTIFACT_STORAGE picks the store:
- `local` (the default): MEDIA_ROOT on this host, Django's FileSystemStorage;
- `s3`: a bucket of any S3-compatible store (django-storages), ARTIFACT_S3_BUCKET with the
  ARTIFACT_S3_* endpoint, region and credentials that `s3://` sources use too.

Uploads, validation and the backends all read through `artifact_storage()`. A backend that
runs elsewhere (a CD system, a Ray or KServe cluster) cannot read MEDIA_ROOT and has no
portal session, so it gets one short-lived URL to one file (`signed_artifact_url`):
- the file is the joblib pickle, or for any other version a "served file" built once and
  kept in the storage: an MLflow model folder as a `.tar.gz`, or a pickle registered by
  URI, each laid out from the version's source and checked against its validated SHA-256;
- with S3 the URL is an S3 presigned GET; with the local folder it is a portal URL carrying
  a token signed with SECRET_KEY (`/artifacts/signed/<version id>/<token>/<file name>`),
  which the `signed_artifact` view serves without login until it expires.
"""

import functools
import gzip
import hashlib
import io
import logging
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core import signing
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, Storage
from django.urls import reverse

from deployments import sources
from deployments.choices import Flavor

logger = logging.getLogger(__name__)

LOCAL, S3 = "local", "s3"
TOKEN_SALT = "deployments.storage.signed-artifact"
SERVED_FOLDER = "served"
CHUNK = 1024 * 1024
MAX_SIGNED_SECONDS = 7 * 24 * 3600  # SigV4 presigned URLs live at most a week


class StorageError(Exception):
    """The artifact cannot be put into, or found in, the storage; the message says why."""


# --- the configured storage -----------------------------------------------------------


def artifact_storage() -> Storage:
    """The storage ARTIFACT_STORAGE names now: MEDIA_ROOT, or the ARTIFACT_S3_BUCKET."""
    if settings.ARTIFACT_STORAGE == S3:
        return _s3_storage(
            settings.ARTIFACT_S3_BUCKET,
            settings.ARTIFACT_S3_ENDPOINT_URL or None,
            settings.ARTIFACT_S3_REGION or None,
            settings.ARTIFACT_S3_ACCESS_KEY_ID or None,
            settings.ARTIFACT_S3_SECRET_ACCESS_KEY or None,
        )
    return _local_storage(str(settings.MEDIA_ROOT), settings.MEDIA_URL)


def is_remote() -> bool:
    """True when artifacts are not files of this host (no `.path()`)."""
    return settings.ARTIFACT_STORAGE == S3


# One instance per configuration: S3Storage keeps its boto3 connections per thread.
@functools.lru_cache(maxsize=8)
def _local_storage(location: str, base_url: str) -> FileSystemStorage:
    return FileSystemStorage(location=location, base_url=base_url)


@functools.lru_cache(maxsize=8)
def _s3_storage(bucket, endpoint_url, region, access_key, secret_key) -> Storage:
    from botocore.config import Config
    from storages.backends.s3 import S3Storage

    class ArtifactS3Storage(S3Storage):
        """S3Storage whose credentials never come from an instance metadata service, and
        whose objects carry no Content-Encoding: django-storages would mark a .tar.gz
        `Content-Encoding: gzip`, and HTTP clients would then hand out the tar inside.
        Archives say what they are (KServe's storage initializer checks Content-Type)."""

        def _create_session(self):
            return sources.boto3_session(self.access_key, self.secret_key)

        def get_object_parameters(self, name):
            return {"ContentType": content_type(name)}

    return ArtifactS3Storage(
        bucket_name=bucket,
        endpoint_url=endpoint_url,
        region_name=region,
        access_key=access_key,
        secret_key=secret_key,
        file_overwrite=False,  # two uploads never share a key
        default_acl=None,  # the bucket's own policy: private
        querystring_auth=True,
        client_config=Config(
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            signature_version="s3v4",
            retries={"max_attempts": 3},
        ),
    )


def content_type(name: str) -> str:
    """The Content-Type a stored artifact is served with, as Django's FileResponse says it."""
    lowered = name.lower()
    if lowered.endswith((".tar.gz", ".tgz")):
        return "application/gzip"
    if lowered.endswith(".zip"):
        return "application/zip"
    if lowered.endswith(".tar"):
        return "application/x-tar"
    return "application/octet-stream"


class ConfiguredStorage(Storage):
    """What a FileField stores through: every call goes to `artifact_storage()` as the
    settings name it at that moment. A FileField evaluates its `storage` callable once,
    at import; this keeps the choice a runtime setting (and migrations free of it)."""

    def __getattribute__(self, name):
        if name.startswith("__"):
            return object.__getattribute__(self, name)
        return getattr(artifact_storage(), name)


_FIELD_STORAGE = ConfiguredStorage()


def field_storage() -> Storage:
    """The `storage=` callable of artifact FileFields (versions, reference datasets)."""
    return _FIELD_STORAGE


def stored_path(name: str) -> Path | None:
    """The local path of the stored file `name`, or None when the storage is remote."""
    try:
        return Path(artifact_storage().path(name))
    except NotImplementedError:
        return None


def copy_to(name: str, target: Path) -> Path:
    """Copy the stored file `name` to the new file `target`; return `target`."""
    with artifact_storage().open(name, "rb") as stored, open(target, "xb") as handle:
        for chunk in iter(lambda: stored.read(CHUNK), b""):
            handle.write(chunk)
    return target


# --- the one file a remote backend fetches ---------------------------------------------


@dataclass(frozen=True)
class ServedFile:
    """The stored file that stands for a version outside the portal: its name in the
    storage, its SHA-256 (what a downloader checks) and whether it is a model bundle."""

    name: str
    sha256: str
    is_bundle: bool

    @property
    def filename(self) -> str:
        return self.name.rsplit("/", 1)[-1]


def served_file(version) -> ServedFile:
    """The file a remote backend gets for `version`, built into the storage the first time.

    An uploaded pickle is served as it is. Anything else (an MLflow model, a pickle
    registered by URI) is laid out from its source, checked against the SHA-256 measured
    on validation, and stored under served/: a model folder as a .tar.gz bundle, a pickle
    as it is. Its SHA-256 is kept beside it (`<name>.sha256`). Raises StorageError."""
    if version.artifact and version.flavor != Flavor.MLFLOW:
        return ServedFile(version.artifact.name, version.artifact_sha256, is_bundle=False)
    is_bundle = version.flavor == Flavor.MLFLOW
    name = f"{SERVED_FOLDER}/{version.model.name}-v{version.number}-{version.pk}" + (
        ".tar.gz" if is_bundle else ".joblib"
    )
    storage = artifact_storage()
    if storage.exists(name) and storage.exists(f"{name}.sha256"):
        with storage.open(f"{name}.sha256", "rb") as handle:
            return ServedFile(name, handle.read().decode().strip(), is_bundle)
    return ServedFile(name, _build_served_file(version, name, is_bundle), is_bundle)


def _build_served_file(version, name: str, is_bundle: bool) -> str:
    """Lay out `version`, store it under `name` with its digest beside; return the digest."""
    with tempfile.TemporaryDirectory(prefix="mlops-serve-") as folder:
        try:
            local = sources.local_copy(version, Path(folder))
        except (sources.SourceError, OSError) as exc:
            raise StorageError(f"Could not lay out {version.artifact_location}: {exc}") from exc
        except Exception as exc:  # artifacts.Refused, httpx errors: all "could not fetch"
            raise StorageError(f"Could not fetch {version.artifact_location}: {exc}") from exc
        if version.artifact_sha256 and local.sha256 != version.artifact_sha256:
            raise StorageError(f"The artifact's SHA-256 changed since validation ({local.sha256}).")
        if is_bundle:
            built = Path(folder) / "bundle.tar.gz"
            write_bundle(local.path, built)
        else:
            built = local.path
        digest = _file_sha256(built)
        _store_once(name, built)
        _store_once(f"{name}.sha256", content=digest.encode())
    return digest


def write_bundle(model_folder: Path, target: Path) -> None:
    """Pack the MLflow model folder (MLmodel at its top) as a .tar.gz at `target`: regular
    files and folders only, sorted, without owners or times, so a rebuild is identical."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    with open(target, "xb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped:
            with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as bundle:
                for path in sorted(model_folder.rglob("*")):
                    if path.is_symlink() or not (path.is_file() or path.is_dir()):
                        continue
                    relative = path.relative_to(model_folder).as_posix()
                    bundle.add(path, arcname=relative, recursive=False, filter=clean)


def _store_once(name: str, path: Path | None = None, content: bytes | None = None) -> None:
    """Save under exactly `name`; when someone stored it meanwhile (a concurrent build of
    the same, identical file), keep theirs and drop ours."""
    storage = artifact_storage()
    if storage.exists(name):
        return
    if content is not None:
        saved = storage.save(name, ContentFile(content))
    else:
        with open(path, "rb") as handle:
            saved = storage.save(name, File(handle))
    if saved != name:
        storage.delete(saved)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- signed URLs --------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedArtifact:
    """A link to a version's served file: `url` (GET, no session, until `expires_at`, a
    Unix time), the file's `sha256`, and whether it is a .tar.gz bundle to unpack."""

    url: str
    sha256: str
    is_bundle: bool
    expires_at: int


def signed_artifact(version, expires_in: int | None = None) -> SignedArtifact:
    """A short-lived link to `version`'s served file (S3 presigned, or a signed portal
    URL); `expires_in` seconds, ARTIFACT_SIGNED_URL_SECONDS by default."""
    expires_in = expires_in or settings.ARTIFACT_SIGNED_URL_SECONDS
    if not 1 <= expires_in <= MAX_SIGNED_SECONDS:
        raise ValueError(f"A signed link lives 1 to {MAX_SIGNED_SECONDS} s, not {expires_in}.")
    served = served_file(version)
    expires_at = int(time.time()) + expires_in
    if is_remote():
        url = artifact_storage().url(served.name, expire=expires_in)
    else:
        url = _portal_url(version, served, expires_at)
    return SignedArtifact(url, served.sha256, served.is_bundle, expires_at)


def signed_artifact_url(version, expires_in: int | None = None) -> str:
    """An absolute http(s) URL a remote backend can GET `version`'s one file from (the
    pickle, or a .tar.gz of the MLflow model folder) without a session, for `expires_in`
    seconds (ARTIFACT_SIGNED_URL_SECONDS, 900 by default)."""
    return signed_artifact(version, expires_in).url


def storage_uri(version) -> str:
    """Where a model server that reads object stores itself (KServe's storageUri) finds
    the version: `s3://bucket/key` of its served file with S3 storage, else the signed URL."""
    if is_remote():
        return f"s3://{settings.ARTIFACT_S3_BUCKET}/{served_file(version).name}"
    return signed_artifact_url(version)


def _portal_url(version, served: ServedFile, expires_at: int) -> str:
    token = signing.dumps(
        {"v": version.pk, "n": served.name, "e": expires_at}, salt=TOKEN_SALT, compress=True
    )
    path = reverse("artifact-signed", args=[version.pk, token, served.filename])
    return f"{settings.PORTAL_BASE_URL.rstrip('/')}{path}"


class TokenRefused(Exception):
    """A signed artifact token that must not be served; the message says why."""


def read_token(version_id: int, token: str) -> str:
    """The stored file name the token grants for version `version_id`; TokenRefused when
    it is forged or altered, made for another version, or expired."""
    try:
        grant = signing.loads(token, salt=TOKEN_SALT)
    except signing.BadSignature:
        raise TokenRefused("The link's signature is not valid.") from None
    if not isinstance(grant, dict) or grant.get("v") != version_id:
        raise TokenRefused("The link was made for another artifact.")
    if int(grant.get("e", 0)) < time.time():
        raise TokenRefused("The link has expired; ask the portal for a new one.")
    return grant["n"]


def open_stored(name: str) -> io.BufferedIOBase:
    """Open the stored file `name` for reading (a view streams it)."""
    return artifact_storage().open(name, "rb")
