"""Notifications: who hears about what, and delivery at most once.

Services announce an event inside the transaction of the change it reports. `announce`
writes one Notification (its key makes a second announcement of the same event a no-op)
and one Delivery per subscribed person and listening channel, and sends them after commit
through Celery. Sending happens in the job, never in the request, so a broken mail server
or chat webhook cannot block or undo the change that triggered it.

A delivery is claimed (pending or retrying → sending) before it is sent, so a job delivered
twice sends once; a failed send is retried with exponential backoff, then marked failed
with the reason. A job lost while sending is never resent: at most once."""

import json
import logging
import re
from datetime import timedelta

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.utils import timezone

from deployments.backends.webhook import SIGNATURE_HEADER, sign  # deploy hooks' scheme
from mlops_portal.choices import (
    DEFAULT_EVENTS_BY_ROLE,
    DeliveryStatus,
    Medium,
    NotificationEvent,
)
from mlops_portal.core import outbox
from mlops_portal.core.policy import can
from mlops_portal.core.roles import OPERATORS
from mlops_portal.models import Delivery, Notification, NotificationChannel, Profile

logger = logging.getLogger(__name__)
User = get_user_model()

EVENT_HEADER = "X-MLOps-Event"
DELIVERY_HEADER = "X-MLOps-Delivery"  # the same on a retry: receivers can drop repeats
CLAIMABLE = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)
# A send this long in `sending` lost its worker (the task's time limit is far shorter).
LOST_SEND_AFTER = timedelta(minutes=10)


class DeliveryError(Exception):
    """Why a send did not go through, in words for the Notifications page."""


class PermanentError(DeliveryError):
    """A send that cannot succeed by trying again (no channel, a 4xx answer)."""


# --- who hears about what ----------------------------------------------------------------


def events_for(user, chosen, role_names) -> frozenset[str]:
    """The events `user` gets by email: their own choice, or their role's defaults."""
    if chosen is not None:
        return frozenset(chosen)
    if user.is_superuser:
        return frozenset(NotificationEvent.values)
    defaults = (DEFAULT_EVENTS_BY_ROLE.get(role, frozenset()) for role in role_names)
    return frozenset().union(*defaults)


def subscribed(users, event: str) -> list:
    """Those of `users` who get `event` by email (active, with an address), in two queries."""
    candidates = {user.pk: user for user in users if user and user.is_active and user.email}
    if not candidates:
        return []
    chosen = dict(
        Profile.objects.filter(user__in=candidates).values_list("user_id", "email_events")
    )
    role_names: dict[int, set] = {}
    memberships = User.groups.through.objects.filter(user_id__in=candidates)
    for user_id, group in memberships.values_list("user_id", "group__name"):
        role_names.setdefault(user_id, set()).add(group)
    return [
        user
        for pk, user in sorted(candidates.items())
        if event in events_for(user, chosen.get(pk), role_names.get(pk, ()))
    ]


def operators():
    """The people who approve deployments: MLOps engineers and superusers."""
    return User.objects.filter(
        Q(groups__name__in=[str(role) for role in OPERATORS]) | Q(is_superuser=True),
        is_active=True,
    ).distinct()


def followers_of(*, target=None, model=None):
    """The people following `target` or `model` (owners are added by the callers)."""
    query = Q(pk__in=[])
    if target is not None:
        query |= Q(followed_targets=target)
    if model is not None:
        query |= Q(followed_models=model)
    return User.objects.filter(query).distinct()


def sees_every_delivery(user) -> bool:
    """Engineers may list every delivery, channels included; others only their own."""
    return can(user, "delivery.list_all")


def deliveries_for(user, everyone=False):
    """The deliveries the Notifications page lists for `user`, newest first."""
    deliveries = Delivery.objects.select_related("notification", "user")
    if everyone and sees_every_delivery(user):
        return deliveries
    return deliveries.filter(user=user)


# --- announcing --------------------------------------------------------------------------


def announce(event, *, key, title, body="", url="", data=None, users=(), channels=True):
    """Record `event` once and queue its deliveries; return the Notification, or None when
    this key was announced before. Call it inside the transaction of the change."""
    with transaction.atomic():
        notification, created = Notification.objects.get_or_create(
            key=key,
            defaults={"event": event, "title": title[:300], "body": body, "url": url,
                      "data": data or {}},
        )  # fmt: skip
        if not created:
            return None
        deliveries = [
            Delivery(notification=notification, user=user, medium=Medium.EMAIL,
                     address=user.email)
            for user in subscribed(users, event)
        ]  # fmt: skip
        if channels:
            deliveries += [
                Delivery(notification=notification, channel=channel, medium=channel.kind,
                         address=channel.name)
                for channel in listening_channels(event)
            ]  # fmt: skip
        Delivery.objects.bulk_create(deliveries)
        _enqueue([delivery.pk for delivery in deliveries])
    return notification


def listening_channels(event: str) -> list:
    # Channels are few (a handful per team); filtering the JSON list here keeps one query
    # that works the same on SQLite and PostgreSQL.
    return [c for c in NotificationChannel.objects.filter(enabled=True) if event in c.events]


def _enqueue(delivery_ids) -> None:
    from mlops_portal.overview.tasks import deliver_notification_task

    outbox.enqueue_many(deliver_notification_task, [(pk,) for pk in delivery_ids])


# --- delivering --------------------------------------------------------------------------


def deliver(delivery_id: int) -> float | None:
    """Send one delivery unless it was sent, is being sent or is not due yet; return the
    seconds to wait before the next attempt when it failed and may be retried."""
    now = timezone.now()
    claimed = Delivery.objects.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        pk=delivery_id,
        status__in=CLAIMABLE,
    ).update(status=DeliveryStatus.SENDING, attempts=F("attempts") + 1, claimed_at=now)
    if not claimed:
        return None  # sent, being sent, or a duplicate job ahead of its backoff
    delivery = Delivery.objects.select_related("notification", "channel").get(pk=delivery_id)
    try:
        SENDERS[delivery.medium](delivery)
    except PermanentError as exc:
        return _record_failure(delivery, str(exc), give_up=True)
    except Exception as exc:  # whatever the cause, it is recorded on the delivery
        return _record_failure(delivery, _describe(exc))
    _finish(delivery, status=DeliveryStatus.SENT, sent_at=timezone.now(), last_error="")
    return None


def _finish(delivery, **fields) -> None:
    # Only while still ours: the sweeper may have declared this send lost meanwhile.
    Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING).update(**fields)


def _record_failure(delivery, reason: str, give_up=False) -> float | None:
    if give_up or delivery.attempts >= settings.NOTIFICATION_MAX_ATTEMPTS:
        _finish(delivery, status=DeliveryStatus.FAILED, last_error=reason[:500])
        logger.warning("Gave up on delivery %s: %s", delivery.pk, reason)
        return None
    wait = settings.NOTIFICATION_RETRY_SECONDS * 2 ** (delivery.attempts - 1)
    _finish(
        delivery,
        status=DeliveryStatus.RETRYING,
        last_error=reason[:500],
        next_attempt_at=timezone.now() + timedelta(seconds=wait),
    )
    return wait


def _describe(exc: Exception) -> str:
    if isinstance(exc, DeliveryError):
        return str(exc)
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__


def sweep_deliveries(now=None) -> dict[str, int]:
    """Resend what a lost message left waiting; fail what a lost worker left `sending`
    (it may have gone out, and at most once beats twice)."""
    now = now or timezone.now()
    grace = timedelta(seconds=settings.NOTIFICATION_SWEEP_GRACE_SECONDS)
    lost_sends = Delivery.objects.filter(
        status=DeliveryStatus.SENDING, claimed_at__lt=now - LOST_SEND_AFTER
    ).update(status=DeliveryStatus.FAILED, last_error="The worker was lost while sending.")
    overdue = list(
        Delivery.objects.filter(
            Q(status=DeliveryStatus.PENDING, created_at__lt=now - grace)
            | Q(status=DeliveryStatus.RETRYING, next_attempt_at__lt=now - grace)
        ).values_list("pk", flat=True)[:1000]
    )
    _enqueue(overdue)
    return {"failed": lost_sends, "resent": len(overdue)}


# --- senders: one per medium -------------------------------------------------------------


def absolute_url(notification) -> str:
    return f"{settings.PORTAL_BASE_URL}{notification.url}" if notification.url else ""


def send_email(delivery) -> None:
    notification = delivery.notification
    link = absolute_url(notification)
    send_mail(
        subject=f"[MLOps Portal] {notification.title}",
        message="\n\n".join(part for part in (notification.body.strip(), link) if part),
        from_email=None,
        recipient_list=[delivery.address],
    )


def chat_payload(notification) -> dict:
    """Slack's incoming-webhook format, which Mattermost and Rocket.Chat accept too. Titles
    and bodies are people's words: escaped, so they cannot ping a room or hide a link."""
    link = absolute_url(notification)
    lines = [f"*{chat_text(notification.title)}*"]
    if notification.body:
        lines.append(chat_text(notification.body))
    if link:
        lines.append(f"<{link}|Open in the MLOps Portal>")
    return {"text": "\n".join(lines), "username": "MLOps Portal"}


ROOM_MENTION = re.compile(r"@(channel|here|all|everyone)\b", re.IGNORECASE)


def chat_text(text: str) -> str:
    """Slack's escaping (`<!channel>`, `<url|label>` need `<`), and a zero-width space after
    `@` so Mattermost and Rocket.Chat see no `@channel`."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return ROOM_MENTION.sub("@\u200b\\1", escaped)


def webhook_payload(delivery) -> dict:
    notification = delivery.notification
    return {
        "delivery": delivery.pk,
        "event": notification.event,
        "title": notification.title,
        "text": notification.body,
        "url": absolute_url(notification),
        "data": notification.data,
        "created_at": notification.created_at.isoformat(),
    }


def send_chat(delivery) -> None:
    channel = _usable_channel(delivery)
    _post(channel, json.dumps(chat_payload(delivery.notification)).encode(), {})


def send_webhook(delivery) -> None:
    channel = _usable_channel(delivery)
    body = json.dumps(webhook_payload(delivery)).encode()
    headers = {EVENT_HEADER: delivery.notification.event, DELIVERY_HEADER: str(delivery.pk)}
    if channel.secret:
        headers[SIGNATURE_HEADER] = sign(channel.secret, body)
    _post(channel, body, headers)


SENDERS = {Medium.EMAIL: send_email, Medium.CHAT: send_chat, Medium.WEBHOOK: send_webhook}


def _usable_channel(delivery):
    channel = delivery.channel
    if channel is None:
        raise PermanentError("The channel was deleted.")
    if not channel.enabled:
        raise PermanentError(f"The channel {channel.name} is disabled.")
    return channel


def _post(channel, body: bytes, headers: dict) -> None:
    """POST to the channel. Errors name the channel, not its URL (a chat webhook URL is a
    credential), and keep none of the answer (it could come from an internal service)."""
    try:
        response = httpx.post(
            channel.url,
            content=body,
            headers={"Content-Type": "application/json", **headers},
            timeout=settings.NOTIFICATION_TIMEOUT_SECONDS,
        )
    except httpx.HTTPError as exc:
        raise DeliveryError(f"Could not reach {channel.name}: {exc.__class__.__name__}") from exc
    status = response.status_code
    if 400 <= status < 500 and status not in (408, 429):
        raise PermanentError(f"{channel.name} refused the message: HTTP {status}")
    if status >= 300:
        raise DeliveryError(f"{channel.name} answered HTTP {status}")


# --- the daily digest --------------------------------------------------------------------


def send_daily_digests(now=None) -> int:
    """Mail each subscribed user what Today would show them; return how many were queued.

    Nothing is sent to a user with nothing to read, and a user gets one digest per day
    however often this runs (the key holds the date)."""
    from mlops_portal.overview.today import MINIMUM_LOOKBACK, triage

    now = now or timezone.now()
    day = timezone.localdate(now)
    users = User.objects.filter(is_active=True).exclude(email="")
    queued = 0
    for user in subscribed(users, NotificationEvent.DAILY_DIGEST):
        sections = triage(user, now - MINIMUM_LOOKBACK)
        if not sections:
            continue
        counts = ", ".join(f"{len(s.shown)}{'+' if s.has_more else ''} {s.title.lower()}"
                           for s in sections)  # fmt: skip
        body = render_to_string(
            "mlops_portal/email/digest.txt",
            {"user": user, "sections": sections, "base_url": settings.PORTAL_BASE_URL},
        )
        notification = announce(
            NotificationEvent.DAILY_DIGEST,
            key=f"digest:{user.pk}:{day.isoformat()}",
            title=f"Today, {day:%a %d %b}: {counts}",
            body=body,
            url="/",
            users=[user],
            channels=False,
        )
        queued += notification is not None
    return queued


def unread_count(user) -> int:
    """How many notifications reached `user` since they last opened the notifications page
    (one COUNT over `delivery_user_idx`)."""
    seen = Profile.objects.filter(user=user).values_list("notifications_seen_at", flat=True)
    rows = Delivery.objects.filter(user=user)
    seen_at = seen.first()
    return (rows.filter(created_at__gt=seen_at) if seen_at else rows).count()


def mark_seen(user, now=None):
    """The user has looked at their notifications: the bell starts counting again from
    now. Returns when they had looked before (None: never), to mark what is new."""
    now = now or timezone.now()
    profile, _ = Profile.objects.get_or_create(user=user)
    before = profile.notifications_seen_at
    Profile.objects.filter(pk=profile.pk).update(notifications_seen_at=now)
    return before
