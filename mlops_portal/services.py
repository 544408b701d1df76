"""State changes of accounts: API tokens, notification preferences and channels, following.
Forms and the API both call these."""

from datetime import UTC, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from deployments.models import RegisteredModel, Target
from mlops_portal import audit
from mlops_portal.choices import CHANNEL_EVENTS, NotificationEvent
from mlops_portal.models import ApiToken, NotificationChannel, Profile, hash_token_secret
from mlops_portal.policy import require
from mlops_portal.validation import field_errors

# A token's last use is written at most this often, so reads do not turn into writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def create_token(user, name: str) -> tuple[ApiToken, str]:
    """Create a token for `user`; return it with its secret, which is never stored."""
    require(user, "token.create")
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


def authenticate_token(secret: str):
    """Return the active user whose token this is, recording the token's use (at most once
    a minute); None for an unknown, revoked or inactive one."""
    user_model = get_user_model()
    found = list(user_model.objects.raw(_token_user_sql(user_model), [hash_token_secret(secret)]))
    if not found:
        return None
    user = found[0]
    user._portal_roles = frozenset(filter(None, (user.role_names or "").split(",")))
    now = timezone.now()
    last_used = user.token_last_used_at
    if isinstance(last_used, str):  # SQLite returns raw() timestamps as text...
        last_used = parse_datetime(last_used)
    if last_used is not None and timezone.is_naive(last_used):  # ...or naive, in UTC
        last_used = last_used.replace(tzinfo=UTC)
    if last_used is None or now - last_used > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=user.token_id).update(last_used_at=now)
    return user


# --- notifications: preferences, channels, following --------------------------------------


def set_email_events(user, events) -> Profile:
    """Choose the events `user` gets by email (replacing their role's defaults)."""
    chosen = sorted(set(events or ()))
    errors = _refused_events(chosen, NotificationEvent.values, "Unknown events")
    if errors:
        raise ValidationError({"events": errors})
    return _change_email_events(user, chosen)


def _refused_events(events, allowed, reason: str) -> list[str]:
    refused = [event for event in events if event not in allowed]
    return [f"{reason}: {', '.join(refused)}."] if refused else []


def reset_email_events(user) -> Profile:
    """Go back to the defaults of the user's role."""
    return _change_email_events(user, None)


ROLE_DEFAULTS = "the defaults of the role"


def _change_email_events(user, chosen) -> Profile:
    require(user, "preferences.edit")
    with transaction.atomic():
        profile, _ = Profile.objects.select_for_update().get_or_create(user=user)
        before = profile.email_events
        if before != chosen:
            Profile.objects.filter(pk=profile.pk).update(email_events=chosen)
            profile.email_events = chosen
            shown = (before or ROLE_DEFAULTS, chosen or ROLE_DEFAULTS)
            audit.record_update(profile, user, {"email_events": shown})
    return profile


def require_channel_admin(actor) -> None:
    """Channels are the engineers' to configure, and to look at: a chat webhook's URL is
    its credential."""
    require(actor, "channel.manage")


def save_channel(actor, channel=None, **fields) -> NotificationChannel:
    """Create a channel, or change `channel`; engineers only. A blank secret keeps the one
    saved before, so editing a channel never needs the secret typed again."""
    require_channel_admin(actor)
    channel = channel or NotificationChannel(created_by=actor)
    secret = fields.pop("secret", "") or ""
    for name, value in fields.items():
        setattr(channel, name, value)
    if secret:
        channel.secret = secret
    channel.name = (channel.name or "").strip()
    channel.events = sorted(set(channel.events or ()))
    errors = field_errors(channel, exclude=["created_by"])
    refused = _refused_events(channel.events, CHANNEL_EVENTS, "Channels cannot receive")
    if refused:
        errors.setdefault("events", []).extend(refused)
    elif not channel.events:
        errors.setdefault("events", []).append("Choose at least one event to send here.")
    if NotificationChannel.objects.filter(name=channel.name).exclude(pk=channel.pk).exists():
        errors.setdefault("name", []).append(f"A channel named {channel.name!r} exists.")
    if errors:
        raise ValidationError(errors)
    channel.save()
    return channel


def delete_channel(actor, channel) -> None:
    require_channel_admin(actor)
    channel.delete()  # its past deliveries stay, without the channel


# What can be followed, by its name in the follow URL.
FOLLOWABLE = {"models": RegisteredModel, "targets": Target}


def follow_kind(thing) -> str:
    return next(kind for kind, model in FOLLOWABLE.items() if isinstance(thing, model))


def set_following(user, thing, following: bool) -> None:
    """Follow (or stop following) a model or a target: its incidents notify `user`."""
    require(user, "follow", thing)
    if following:
        thing.followers.add(user)
    else:
        thing.followers.remove(user)
