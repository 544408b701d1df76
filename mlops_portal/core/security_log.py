"""One structured log line per security event: a failed login (form or API token) and a
refused permission. Lines go to the `mlops_portal.security` logger as `key=value` pairs
(values with spaces or control characters are JSON-quoted, so a crafted path cannot forge
a second line); the same fields ride on the record as `record.security` for JSON handlers.

Never pass a password or a token here: the helpers take the request and name the user,
nothing else from the credentials."""

import json
import logging
import re

from django.conf import settings
from django.core.exceptions import PermissionDenied

logger = logging.getLogger("mlops_portal.security")

PLAIN_VALUE = re.compile(r"[\w.:/@+-]+")
# Long enough for any real user name or path; a 10 kB username is an attack, not a name.
MAX_VALUE_LENGTH = 200


def client_ip(request) -> str:
    """The client's address: REMOTE_ADDR, or behind TRUSTED_PROXY_COUNT proxies the
    X-Forwarded-For entry that the outermost trusted proxy added (as DRF's NUM_PROXIES)."""
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies <= 0 or not forwarded:
        return remote
    addresses = [part.strip() for part in forwarded.split(",") if part.strip()]
    return addresses[-min(proxies, len(addresses))] if addresses else remote


def axes_client_ip(request) -> str:
    """django-axes' AXES_CLIENT_IP_CALLABLE: lock out the same address the logs name."""
    return client_ip(request)


def format_fields(fields: dict) -> str:
    return " ".join(f"{key}={_value(value)}" for key, value in fields.items())


def _value(value) -> str:
    text = "-" if value is None or value == "" else str(value)[:MAX_VALUE_LENGTH]
    return text if PLAIN_VALUE.fullmatch(text) else json.dumps(text)


def request_fields(request, user=None) -> dict:
    """user, ip, method and path of `request`; `user` names who tried when nobody is logged in."""
    if user is None:
        current = getattr(request, "user", None)  # DRF: already authenticated by now
        user = current.get_username() if current is not None and current.is_authenticated else ""
    return {
        "user": user,
        "ip": client_ip(request),
        "method": request.method,
        "path": request.path,
    }


def log_event(event: str, request, *, user=None, level=logging.WARNING, **extra) -> None:
    fields = {"event": event, **request_fields(request, user), **extra}
    logger.log(level, format_fields(fields), extra={"security": fields})


def login_failed(request, username: str, *, locked_out: bool = False) -> None:
    """A wrong password (or a locked-out account) on the login form."""
    log_event("login_failed", request, user=username, locked_out=str(locked_out).lower())


def token_failed(request, reason: str) -> None:
    """A request with an unknown, revoked or malformed API token: nobody is known (and
    reading a DRF request's `user` here would authenticate it again)."""
    log_event("token_failed", request, user="", reason=reason)


def permission_denied(request, reason: str = "", status: int | None = None) -> None:
    """A caller was refused: a page's or the API's 403 (`status`), or a refusal a page shows
    as a message on its redirect (no status)."""
    extra = {"status": status} if status else {}
    log_event("permission_denied", request, **extra, reason=reason)


class OneLineForbidden(logging.Filter):
    """On `django.request`: drop Django's "Forbidden (Permission denied)" line and its
    traceback; `permission_denied` above already wrote one line with who, where and why.
    A refused permission is an expected outcome, not an error to debug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) != 403:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        return exc is not None and not isinstance(exc, PermissionDenied)
