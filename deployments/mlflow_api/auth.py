"""Who is calling: `MLFLOW_TRACKING_TOKEN` arrives as `Bearer <portal API token>`;
`MLFLOW_TRACKING_USERNAME`/`PASSWORD` as Basic, checked by `authenticate()` so the login
lockout (django-axes) counts and refuses Basic attempts like the login form's."""

import base64
import binascii

from django.contrib.auth import authenticate
from rest_framework.exceptions import Throttled

from deployments.mlflow_api.errors import MlflowError
from mlops_portal.choices import TokenScope
from mlops_portal.core import security_log
from mlops_portal.core.api.authentication import TokenFailureThrottle
from mlops_portal.core.api.permissions import TokenScope as TokenScopePermission
from mlops_portal.core.tokens import TokenExpired, authenticate_token


def request_user(request):
    """The user the credentials name; MlflowError (401, 429) when they name nobody."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    scheme = scheme.lower()
    if scheme in ("bearer", "token"):
        return _token_user(request, credentials.strip())
    if scheme == "basic":
        return _password_user(request, credentials.strip())
    raise MlflowError(
        "UNAUTHENTICATED",
        "Authenticate with MLFLOW_TRACKING_TOKEN (a portal API token) or "
        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.",
    )


def _token_user(request, secret: str):
    throttle = TokenFailureThrottle(request)
    try:
        throttle.check()
    except Throttled as refused:
        raise MlflowError("REQUEST_LIMIT_EXCEEDED", str(refused.detail)) from None
    try:
        user = authenticate_token(secret) if secret else None
    except TokenExpired as expired:  # the same answer as /api/v1/ gives
        _token_failed(request, throttle, "expired")
        raise MlflowError(
            "UNAUTHENTICATED",
            f"This token expired at {expired.args[0]:%Y-%m-%d %H:%M} UTC; create a new one.",
        ) from None
    if user is None:
        _token_failed(request, throttle, "invalid")
        raise MlflowError("UNAUTHENTICATED", "Invalid or revoked token.")
    return user


def _token_failed(request, throttle, reason: str) -> None:
    throttle.record_failure()
    security_log.token_failed(request, reason)


def refuse_read_only_token(user) -> None:
    """A write with a read-only token is refused here as in /api/v1/ (TokenScope)."""
    if getattr(user, "token_scope", None) == TokenScope.READ:
        raise MlflowError("PERMISSION_DENIED", TokenScopePermission.message)


def _password_user(request, encoded: str):
    try:
        username, _, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise MlflowError("UNAUTHENTICATED", "Malformed Basic credentials.") from None
    user = authenticate(request, username=username, password=password)
    if getattr(request, "axes_locked_out", False):
        raise MlflowError(
            "REQUEST_LIMIT_EXCEEDED", "Too many failed logins: this account is locked for now."
        )
    if user is None:
        raise MlflowError("UNAUTHENTICATED", "Invalid username or password.")
    return user
