"""The REST API over httpx: authentication, safe retries and errors as exit codes."""

import time
import uuid
from pathlib import Path

import httpx

from mlops_cli.exits import FAILED, USAGE, CliError

RETRIES = 4  # tries after the first, for answers that are safe to retry
RETRY_STATUSES = {502, 503, 504}
MAX_RETRY_AFTER = 60.0


class Api:
    """A client of one portal's `/api/v1/` with one token.

    GETs, and POSTs that carry an `Idempotency-Key`, are retried after a dropped
    connection, a timeout or a 502/503/504 (backoff 0.5 s doubling), and after a 429 once
    its `Retry-After` has passed: the key makes the portal answer a retried create with the
    first result instead of a second object."""

    def __init__(self, url: str, token: str, *, timeout: float = 60.0, backoff: float = 0.5):
        self.backoff = backoff
        self.http = httpx.Client(
            base_url=url.rstrip("/") + "/api/v1/",
            headers={"Authorization": f"Token {token}", "User-Agent": "mlops-cli"},
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    def get(self, path: str, **params) -> dict | list:
        return self._send("GET", path, params={k: v for k, v in params.items() if v is not None})

    def act(self, path: str, *, json=None) -> dict:
        """POST an action the portal does not deduplicate (promote, abort): retried only when
        it cannot have reached the portal (no connection made, or refused with 429), since
        a second copy of a decision that went through is answered 409."""
        return self._send("POST", path, json=json, safe=False)

    def create(self, path: str, *, json=None, data=None, files=None) -> dict:
        """POST that creates something, with a fresh Idempotency-Key reused by its retries.
        `files` is {field: path}: each try reopens the file."""
        key = str(uuid.uuid4())
        return self._send(
            "POST", path, json=json, data=data, files=files, headers={"Idempotency-Key": key}
        )

    def _send(self, method, path, *, files=None, safe=True, **options):
        """Send, retrying as the class says; `safe=False` retries only what never arrived."""
        unsent = (httpx.ConnectError, httpx.ConnectTimeout)
        for attempt in range(RETRIES + 1):
            last = attempt == RETRIES
            try:
                with _opened(files) as parts:
                    response = self.http.request(method, path, files=parts, **options)
            except httpx.TransportError as exc:
                if last or not (safe or isinstance(exc, unsent)):
                    raise CliError(f"No answer from {self.http.base_url}: {exc}") from None
                time.sleep(self.backoff * 2**attempt)
                continue
            if response.status_code == 429 and not last:
                time.sleep(_retry_after(response))
                continue
            if response.status_code in RETRY_STATUSES and safe and not last:
                time.sleep(self.backoff * 2**attempt)
                continue
            return _answer(response)
        raise AssertionError("unreachable")

    def close(self):
        self.http.close()


class _opened:
    """Open each file of {field: path} for one try; yield httpx's `files` (or None)."""

    def __init__(self, files):
        self.files, self.handles = files, []

    def __enter__(self):
        if not self.files:
            return None
        parts = {}
        for field, path in self.files.items():
            handle = open(path, "rb")  # closed in __exit__
            self.handles.append(handle)
            parts[field] = (Path(path).name, handle)
        return parts

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.close()


def _retry_after(response) -> float:
    try:
        return min(float(response.headers.get("Retry-After", "1")), MAX_RETRY_AFTER)
    except ValueError:
        return 1.0


def _answer(response: httpx.Response):
    """The JSON body of a 2xx; a CliError with the portal's message otherwise."""
    if response.is_success:
        return response.json() if response.content else {}
    try:
        body = response.json()
    except ValueError:
        body = response.text[:500]
    code = USAGE if response.status_code in (401, 403) else FAILED
    raise CliError(f"{response.status_code} {response.reason_phrase}: {describe(body)}", code)


def describe(body) -> str:
    """An error body as one line: `detail`, or `field: message` pairs; a list's item is
    named by its index, e.g. `canary_steps[2]: Ensure this value is less than or equal to
    99.`"""
    if isinstance(body, dict):
        if set(body) == {"detail"}:
            return str(body["detail"])
        return "; ".join(_field_messages(body))
    return str(body)


def _field_messages(errors: dict, prefix: str = ""):
    for field, messages in errors.items():
        name = f"{prefix}[{field}]" if prefix else str(field)
        if isinstance(messages, dict):  # errors of a list's items or a nested object's fields
            yield from _field_messages(messages, name)
        elif isinstance(messages, list):
            yield f"{name}: {' '.join(map(str, messages))}"
        else:
            yield f"{name}: {messages}"
