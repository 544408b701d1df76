"""State changes of accounts: API tokens. Forms and the API both call these."""

from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from mlops_portal.models import ApiToken, hash_token_secret

# A token's last use is written at most this often, so reads do not turn into writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def create_token(user, name: str) -> tuple[ApiToken, str]:
    """Create a token for `user`; return it with its secret, which is never stored."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": ["Give the token a name, e.g. the pipeline using it."]})
    if len(name) > 100:
        raise ValidationError({"name": ["Use at most 100 characters."]})
    if user.api_tokens.active().filter(name=name).exists():
        raise ValidationError({"name": [f"You already have an active token named {name!r}."]})
    secret = ApiToken.new_secret()
    token = ApiToken.objects.create(
        user=user, name=name, prefix=secret[:12], digest=hash_token_secret(secret)
    )
    return token, secret


def revoke_token(user, token: ApiToken) -> ApiToken:
    """Revoke `token`; only its owner may. Revoking twice is harmless."""
    if token.user_id != user.pk:
        raise PermissionDenied("You can only revoke your own tokens.")
    with transaction.atomic():
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    token.refresh_from_db()
    return token


def authenticate_token(secret: str) -> ApiToken | None:
    """Return the active token whose secret this is, recording its use; None if unknown."""
    token = (
        ApiToken.objects.active()
        .select_related("user")
        .filter(digest=hash_token_secret(secret))
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
