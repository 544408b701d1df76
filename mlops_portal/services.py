"""State changes of accounts: notification preferences and channels, following (API tokens
are in `mlops_portal.core.tokens`). Forms and the API both call these."""

from django.core.exceptions import ValidationError
from django.db import transaction

from deployments.models import RegisteredModel, Target
from mlops_portal.choices import CHANNEL_EVENTS, NotificationEvent
from mlops_portal.core import audit
from mlops_portal.core.policy import require
from mlops_portal.core.validation import field_errors
from mlops_portal.models import NotificationChannel, Profile

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
