"""API tokens: create, revoke, and the lookup every API request runs. Accounts are core:
the API plumbing authenticates with this."""

from dataclasses import dataclass
from datetime import UTC, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from mlops_portal.choices import TokenScope
from mlops_portal.core import audit
from mlops_portal.core.compiled import InstanceReader
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
# CPU than the rest of a small API response; read with a plain cursor and made into a user
# with `from_db`, as a queryset would, because `.raw()` spent as long again working out
# its columns on every call (about 0.5 M instructions of an API GET, bench/instructions.py).
TOKEN_USER_SQL = """
    SELECT {user_columns}, t.id, t.last_used_at, t.scope, t.expires_at,
        (SELECT {concat} FROM {membership_table} m JOIN {group_table} g ON g.id = m.group_id
         WHERE m.user_id = u.id)
    FROM {user_table} u JOIN {token_table} t ON t.user_id = u.id
    WHERE t.digest = %s AND t.revoked_at IS NULL AND u.is_active
"""
CONCAT_NAMES = {"postgresql": "STRING_AGG(g.name, ',')", "sqlite": "GROUP_CONCAT(g.name, ',')"}


@dataclass(frozen=True)
class UserLookup:
    """The lookup's SQL for one database and user model, and the reader of its user."""

    sql: str
    users: InstanceReader

    @classmethod
    def build(cls, user_model, connection) -> "UserLookup":
        users = InstanceReader(user_model)
        membership = user_model.groups.through
        sql = TOKEN_USER_SQL.format(
            user_columns=users.columns(connection, prefix="u."),
            concat=CONCAT_NAMES.get(connection.vendor, "GROUP_CONCAT(g.name, ',')"),
            membership_table=membership._meta.db_table,
            group_table=Group._meta.db_table,
            user_table=user_model._meta.db_table,
            token_table=ApiToken._meta.db_table,
        )
        return cls(sql, users)

    def user(self, connection, secret: str):
        """The user and the token's (id, last used, scope, expiry, role names), or None."""
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [hash_token_secret(secret)])
            row = cursor.fetchone()
        if row is None:
            return None
        return self.users.instance(connection, row), row[len(self.users.fields) :]


_lookups: dict[tuple, UserLookup] = {}  # by database vendor and user model (tests may switch)


def _lookup(user_model) -> UserLookup:
    key = (connection.vendor, user_model)
    if key not in _lookups:
        _lookups[key] = UserLookup.build(user_model, connection)
    return _lookups[key]


class TokenExpired(Exception):
    """The token was valid until its `expires_at`."""


def authenticate_token(secret: str):
    """Return the active user whose token this is, with `token_id`, `token_scope` and
    `token_expires_at` set, recording the token's use (at most once a minute); None for an
    unknown, revoked or inactive one. Raise TokenExpired for an expired one."""
    user_model = get_user_model()
    found = _lookup(user_model).user(connection, secret)
    if found is None:
        return None
    user, token = found
    user.token_id, last_used, user.token_scope, expires_at, role_names = token
    now = timezone.now()
    user.token_expires_at = _aware(expires_at)
    if user.token_expires_at is not None and user.token_expires_at <= now:
        raise TokenExpired(user.token_expires_at)
    user._portal_roles = frozenset(filter(None, (role_names or "").split(",")))
    last_used = _aware(last_used)
    if last_used is None or now - last_used > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=user.token_id).update(last_used_at=now)
    return user


def _aware(moment):
    if isinstance(moment, str):  # SQLite returns raw() timestamps as text...
        moment = parse_datetime(moment)
    if moment is not None and timezone.is_naive(moment):  # ...or naive, in UTC
        moment = moment.replace(tzinfo=UTC)
    return moment
