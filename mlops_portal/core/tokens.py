"""API tokens: create, revoke, and the lookup every API request runs. Accounts are core:
the API plumbing authenticates with this."""

from datetime import UTC, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from mlops_portal.choices import TokenScope
from mlops_portal.core import audit
from mlops_portal.core.policy import require
from mlops_portal.models import ApiToken, hash_token_secret

# A token's last use is written at most this often, so reads do not turn into writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def create_token(
    user, name: str, *, scope: str = TokenScope.WRITE, expires_at=None
) -> tuple[ApiToken, str]:
    """Create a token for `user`, read-only when `scope` is "read" and working until
    `expires_at` (None: until revoked); return it with its secret, which is never stored."""
    require(user, "token.create")
    name = name.strip()
    if not name:
        raise ValidationError({"name": ["Give the token a name, e.g. the pipeline using it."]})
    if len(name) > 100:
        raise ValidationError({"name": ["Use at most 100 characters."]})
    if user.api_tokens.active().filter(name=name).exists():
        raise ValidationError({"name": [f"You already have an active token named {name!r}."]})
    if scope not in TokenScope.values:
        raise ValidationError({"scope": [f"Choose one of: {', '.join(TokenScope.values)}."]})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": ["Choose a moment in the future."]})
    secret = ApiToken.new_secret()
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=secret[:12],
        digest=hash_token_secret(secret),
        scope=scope,
        expires_at=expires_at,
    )
    return token, secret


def revoke_token(user, token: ApiToken) -> ApiToken:
    """Revoke `token`; only its owner may. Revoking twice is harmless."""
    require(user, "token.revoke", token)
    now = timezone.now()
    with transaction.atomic():
        revoked = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=now
        )
        if revoked:
            audit.record_update(token, user, {"revoked_at": ("", now)})
    token.refresh_from_db()
    return token


# Every API request runs this lookup. Written once as SQL because building the same ORM
# queries (token joined to its user, then the user's groups for the role checks) cost more
# CPU than the rest of a small API response.
TOKEN_USER_SQL = """
    SELECT u.*, t.id AS token_id, t.last_used_at AS token_last_used_at,
        t.scope AS token_scope, t.expires_at AS token_expires_at,
        (SELECT {concat} FROM {membership_table} m JOIN {group_table} g ON g.id = m.group_id
         WHERE m.user_id = u.id) AS role_names
    FROM {user_table} u JOIN {token_table} t ON t.user_id = u.id
    WHERE t.digest = %s AND t.revoked_at IS NULL AND u.is_active
"""
CONCAT_NAMES = {"postgresql": "STRING_AGG(g.name, ',')", "sqlite": "GROUP_CONCAT(g.name, ',')"}


def _token_user_sql(user_model) -> str:
    membership = user_model.groups.through
    return TOKEN_USER_SQL.format(
        concat=CONCAT_NAMES.get(connection.vendor, "GROUP_CONCAT(g.name, ',')"),
        membership_table=membership._meta.db_table,
        group_table=Group._meta.db_table,
        user_table=user_model._meta.db_table,
        token_table=ApiToken._meta.db_table,
    )


class TokenExpired(Exception):
    """The token was valid until its `expires_at`."""


def authenticate_token(secret: str):
    """Return the active user whose token this is, with `token_id`, `token_scope` and
    `token_expires_at` set, recording the token's use (at most once a minute); None for an
    unknown, revoked or inactive one. Raise TokenExpired for an expired one."""
    user_model = get_user_model()
    found = list(user_model.objects.raw(_token_user_sql(user_model), [hash_token_secret(secret)]))
    if not found:
        return None
    user = found[0]
    now = timezone.now()
    user.token_expires_at = _aware(user.token_expires_at)
    if user.token_expires_at is not None and user.token_expires_at <= now:
        raise TokenExpired(user.token_expires_at)
    user._portal_roles = frozenset(filter(None, (user.role_names or "").split(",")))
    last_used = _aware(user.token_last_used_at)
    if last_used is None or now - last_used > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=user.token_id).update(last_used_at=now)
    return user


def _aware(moment):
    if isinstance(moment, str):  # SQLite returns raw() timestamps as text...
        moment = parse_datetime(moment)
    if moment is not None and timezone.is_naive(moment):  # ...or naive, in UTC
        moment = moment.replace(tzinfo=UTC)
    return moment
