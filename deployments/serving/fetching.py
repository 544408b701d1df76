"""Fetching a version's artifact from the link the portal signed for it, on the machine
that serves it (a Ray worker, a container): no Django, no portal session.

`download(url, dest_dir)` takes the URL of `deployments.storage.signed_artifact_url` (an S3
presigned URL or a signed portal URL, or a file:// URL in tests and on shared disks),
checks the SHA-256 when one is given, unpacks a model bundle (.tar.gz) with the same safe
unpacking as uploads (deployments.archives) and returns what the loaders take
(`loading.load_model`): the pickle's path, or the MLflow model folder.
"""

import hashlib
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from deployments import archives
from deployments.serving import mlflow_model

CHUNK = 1024 * 1024
MAX_BYTES = 2 * 1024**3  # the portal's limits are lower; these only stop a runaway download
MAX_EXTRACTED_BYTES = 4 * 1024**3
MAX_FILES = 10_000


class FetchError(Exception):
    """The artifact could not be downloaded, checked or unpacked; the message says why."""


def download(
    url: str,
    dest_dir: str | Path,
    *,
    sha256: str = "",
    timeout: float = 60.0,
    max_bytes: int = MAX_BYTES,
    max_extracted_bytes: int = MAX_EXTRACTED_BYTES,
    max_files: int = MAX_FILES,
) -> Path:
    """Download the artifact at `url` into the folder `dest_dir` (created if missing) and
    return the path to load: the file itself, or for an archive the MLflow model folder
    unpacked from it. Raises FetchError."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / _file_name(url)
    partial = target.with_name(target.name + ".part")
    partial.unlink(missing_ok=True)
    try:
        digest = _fetch(url, partial, timeout=timeout, max_bytes=max_bytes)
        if sha256 and digest != sha256.lower():
            raise FetchError(f"The downloaded artifact's SHA-256 is {digest}, not {sha256}.")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    if not archives.is_archive(target):
        return target
    return _unpack(target, dest_dir / "model", max_extracted_bytes, max_files)


def _file_name(url: str) -> str:
    """The URL's last path segment (`model.joblib`, `churn-v2-7.tar.gz`), made safe."""
    name = Path(unquote(urlparse(url).path)).name
    return name if name not in ("", ".", "..") else "artifact"


def _fetch(url: str, target: Path, *, timeout: float, max_bytes: int) -> str:
    """Write the bytes at `url` to the new file `target`; return their SHA-256."""
    scheme = urlparse(url).scheme
    if scheme == "file":
        source = Path(unquote(urlparse(url).path))
        if not source.is_file():
            raise FetchError(f"{source} is not a file.")
        with open(source, "rb") as handle:
            return _write(iter(lambda: handle.read(CHUNK), b""), target, max_bytes)
    if scheme not in ("http", "https"):
        raise FetchError(
            f"Cannot download {scheme or 'a schemeless'} URL; give http(s):// or file://."
        )
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                reason = response.read()[:200].decode(errors="replace").strip()
                raise FetchError(
                    f"Downloading the artifact answered HTTP {response.status_code}: {reason}"
                )
            return _write(response.iter_bytes(CHUNK), target, max_bytes)
    except httpx.HTTPError as exc:
        raise FetchError(f"Could not download the artifact: {exc}") from exc


def _write(chunks, target: Path, max_bytes: int) -> str:
    digest, written = hashlib.sha256(), 0
    with open(target, "xb") as handle:
        for chunk in chunks:
            written += len(chunk)
            if written > max_bytes:
                raise FetchError(f"The artifact is larger than {max_bytes} bytes.")
            digest.update(chunk)
            handle.write(chunk)
    return digest.hexdigest()


def _unpack(archive: Path, folder: Path, max_bytes: int, max_files: int) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    try:
        archives.extract(archive, folder, max_bytes=max_bytes, max_files=max_files)
    except archives.ArchiveError as exc:
        raise FetchError(str(exc)) from exc
    root = mlflow_model.find_root(folder)
    if root is None:
        raise FetchError("The bundle holds no MLmodel file: not an MLflow model.")
    return root
