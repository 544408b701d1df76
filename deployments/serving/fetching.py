# placeholder: replaced at merge by the storage branch
"""Fetching a version's artifact from the one URL `deployments.storage` gives, for a model
server outside the portal (a Ray Serve replica): no Django here.

Placeholder of the storage branch's module, with the same signature: `file://` and
http(s) URLs; a .tar.gz (an MLflow model folder) is unpacked safely with
deployments.archives, within the limits below."""

import shutil
import urllib.parse
from pathlib import Path

import httpx

from deployments import archives

MAX_BYTES = 200 * 1024 * 1024
MAX_EXTRACTED_BYTES = 1024 * 1024 * 1024
MAX_FILES = 10_000
TIMEOUT_SECONDS = 60.0


class FetchError(Exception):
    """The artifact could not be fetched or unpacked; the message says why."""


def download(url: str, dest_dir: str | Path) -> Path:
    """Fetch the artifact at `url` into the existing folder `dest_dir`; return what to
    load: the joblib file, or the folder of the unpacked MLflow model."""
    dest_dir = Path(dest_dir)
    fetched = dest_dir / "artifact"
    parsed = urllib.parse.urlsplit(url)
    try:
        if parsed.scheme == "file":
            shutil.copyfile(urllib.parse.unquote(parsed.path), fetched)
        elif parsed.scheme in ("http", "https"):
            _download_http(url, fetched)
        else:
            raise FetchError(f"Cannot fetch {parsed.scheme or 'a schemeless'} URL {url[:80]!r}.")
    except (OSError, httpx.HTTPError) as exc:
        raise FetchError(f"Could not fetch the artifact: {exc}") from exc
    if not archives.is_archive(fetched):
        return fetched
    try:
        return archives.extract(
            fetched, dest_dir / "model", max_bytes=MAX_EXTRACTED_BYTES, max_files=MAX_FILES
        )
    except archives.ArchiveError as exc:
        raise FetchError(str(exc)) from exc
    finally:
        fetched.unlink(missing_ok=True)


def _download_http(url: str, target: Path) -> None:
    received = 0
    with httpx.stream("GET", url, timeout=TIMEOUT_SECONDS, follow_redirects=True) as response:
        if response.status_code != 200:
            raise FetchError(f"Fetching the artifact answered HTTP {response.status_code}.")
        with open(target, "wb") as handle:
            for chunk in response.iter_bytes():
                received += len(chunk)
                if received > MAX_BYTES:
                    raise FetchError(f"The artifact is larger than {MAX_BYTES} bytes.")
                handle.write(chunk)
