"""`Idempotency-Key` for the API's create operations: a retried request with the same key
gets the first response again (same status, same body) and creates nothing new.

Put `@idempotent` on a view's handler. The key is reserved by inserting its row in the
same transaction as the create, so a crash leaves neither the object nor the key; a
concurrent retry waits on the row's unique index until the first request commits, then
replays its answer. Only successful (2xx) answers are kept: after an error the key is free
and the retry runs again. Keys are per user and kept IDEMPOTENCY_KEY_RETENTION_HOURS."""

import functools
import hashlib
import json
from datetime import timedelta

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from mlops_portal.core.api.exceptions import ConflictError
from mlops_portal.models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255

KEY_PARAMETER = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Any unique string (a UUID) per logical request, at most 255 printable characters. "
        "A retry with the same key gets the first successful answer again (with "
        f"`{REPLAYED_HEADER}: true`) and creates nothing new; the same key with another body "
        "is a 409. Keys are kept 24 hours."
    ),
)


def idempotent(handler):
    """Make a create handler honour `Idempotency-Key` (see the module's docstring)."""

    @functools.wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        check_key(key)
        fingerprint = request_fingerprint(request)
        with transaction.atomic():
            earlier = reserve(request.user, key, fingerprint)
            if earlier is not None:
                return replay(earlier, fingerprint)
            response = handler(view, request, *args, **kwargs)
            remember(request.user, key, response)
        return response

    return extend_schema(parameters=[KEY_PARAMETER])(wrapper)


def check_key(key: str) -> None:
    if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise exceptions.ValidationError(
            {HEADER: [f"Use 1 to {MAX_KEY_LENGTH} printable ASCII characters, e.g. a UUID."]}
        )


def request_fingerprint(request) -> str:
    """SHA-256 of the method, path and parsed body: the same for a retry of the same request
    (a multipart retry has a new boundary, so the raw bytes would differ), and files count by
    their content."""
    data = request.data
    if hasattr(data, "lists"):  # a QueryDict: form or multipart fields, files among them
        body = {name: [_value(value) for value in values] for name, values in data.lists()}
    else:
        body = data
    canonical = json.dumps(
        [request.method, request.path, body], sort_keys=True, cls=JSONEncoder, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _value(value):
    if not isinstance(value, UploadedFile):
        return value
    digest = hashlib.sha256()
    for chunk in value.chunks():
        digest.update(chunk)
    value.seek(0)
    return {"file": value.name, "sha256": digest.hexdigest()}


def reserve(user, key: str, fingerprint: str) -> IdempotencyKey | None:
    """Insert the key's row (empty until `remember`); return the earlier request's row
    instead when the key was used already, forgetting it when it is past its retention."""
    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_RETENTION_HOURS)
    for _ in range(2):
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(
                    user=user, key=key, fingerprint=fingerprint, status_code=0
                )
            return None
        except IntegrityError:
            earlier = IdempotencyKey.objects.get(user=user, key=key)
            if earlier.created_at >= cutoff:
                return earlier
            earlier.delete()  # expired: the key is new again
    raise ConflictError(f"{HEADER} {key!r} is in use by a request running now; retry it.")


def replay(earlier: IdempotencyKey, fingerprint: str) -> Response:
    if earlier.fingerprint != fingerprint:
        raise ConflictError(
            f"{HEADER} {earlier.key!r} was already used for a different request; "
            "use a new key for a new request."
        )
    return Response(earlier.response, status=earlier.status_code, headers={REPLAYED_HEADER: "true"})


def remember(user, key: str, response: Response) -> None:
    """Keep a successful answer for the retries; after an error the key is free again."""
    if not 200 <= response.status_code < 300:
        IdempotencyKey.objects.filter(user=user, key=key).delete()
        return
    body = json.loads(json.dumps(response.data, cls=JSONEncoder))
    IdempotencyKey.objects.filter(user=user, key=key).update(
        status_code=response.status_code, response=body
    )


def prune(now=None) -> int:
    """Delete keys older than IDEMPOTENCY_KEY_RETENTION_HOURS; return how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.IDEMPOTENCY_KEY_RETENTION_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
