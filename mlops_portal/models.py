import hashlib
import secrets

from django.conf import settings
from django.core.validators import URLValidator
from django.db import models
from django.utils import timezone

from mlops_portal.choices import ChannelKind, DeliveryStatus, Medium, NotificationEvent, TokenScope

TOKEN_PREFIX = "mlp_"


def hash_token_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def active(self):
        """Neither revoked nor expired."""
        live = models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=timezone.now())
        return self.filter(live, revoked_at__isnull=True)


class ApiToken(models.Model):
    """A named API credential. Only the SHA-256 of the secret is stored; the secret itself
    is shown once, when the token is created."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    # The first characters of the secret, so a user can tell their tokens apart.
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)  # lookup on every API request
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # None: never expires. An expired token answers 401, like a revoked one.
    expires_at = models.DateTimeField(null=True, blank=True)
    # A read-only token's writes answer 403 (mlops_portal.core.api.permissions.TokenScope).
    scope = models.CharField(max_length=5, choices=TokenScope.choices, default=TokenScope.WRITE)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def new_secret() -> str:
        return TOKEN_PREFIX + secrets.token_urlsafe(32)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class Profile(models.Model):
    """What the portal remembers per user: email subscriptions and the last Today visit."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="portal_profile",
    )
    # None until the user chooses: the defaults of their role apply (choices.py).
    email_events = models.JSONField(null=True, blank=True)
    last_today_visit_at = models.DateTimeField(null=True, blank=True)
    # The navbar bell counts the user's notifications newer than this (their last look).
    notifications_seen_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"profile of {self.user}"


class NotificationChannel(models.Model):
    """A team-wide destination (a chat room's incoming webhook, or any JSON receiver) that
    receives every notification of the events it lists."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=ChannelKind.choices)
    url = models.URLField(max_length=500, validators=[URLValidator(schemes=["http", "https"])])
    # Signs webhook bodies (HMAC-SHA256); never shown back once saved.
    secret = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Notification(models.Model):
    """Something worth telling people about, written once per event (the key makes a
    second announcement of the same event a no-op)."""

    event = models.CharField(max_length=40, choices=NotificationEvent.choices)
    key = models.CharField(max_length=120, unique=True)
    title = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=500, blank=True)  # a path in the portal
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            # Retention: WHERE created_at < now - NOTIFICATION_RETENTION_DAYS.
            models.Index(fields=["created_at"], name="notification_created_idx"),
        ]

    def __str__(self):
        return self.title


class Delivery(models.Model):
    """One notification to one person or channel. Claimed before sending, so it goes out at
    most once however often its job is delivered."""

    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="deliveries"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="deliveries",
    )
    channel = models.ForeignKey(
        NotificationChannel,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="deliveries",
    )
    medium = models.CharField(max_length=10, choices=Medium.choices)
    address = models.CharField(max_length=500)  # the email address or the channel's name
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)  # when the last send started
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["notification", "user"],
                condition=models.Q(user__isnull=False),
                name="delivery_once_per_user",
            ),
            models.UniqueConstraint(
                fields=["notification", "channel"],
                condition=models.Q(channel__isnull=False),
                name="delivery_once_per_channel",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="delivery_user_idx"),
            models.Index(fields=["status", "next_attempt_at"], name="delivery_status_idx"),
        ]

    def __str__(self):
        return f"{self.notification} → {self.address}"


class OutboxMessage(models.Model):
    """A job to send to Celery, written in the transaction of the change that asks for it
    (`mlops_portal.core.outbox`): the change and its job commit together or not at all.

    `relay_at` says when the relay may take the row: a moment after it is written (the
    committing process publishes it first), at once after that process failed to, and
    later again, with backoff, after the relay itself failed to."""

    task = models.CharField(max_length=200)
    args = models.JSONField(default=list)  # small and serialisable: ids
    queue = models.CharField(max_length=50, blank=True)  # blank: the task's route
    available_at = models.DateTimeField()  # the job runs no earlier (a countdown)
    relay_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)  # failed publishes
    last_error = models.TextField(blank=True)
    # The request that asked for the job, so the worker's log lines carry its id even when
    # the relay, another process, publishes it (mlops_portal.core.logs).
    request_id = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [
            # The relay: WHERE published_at IS NULL AND relay_at <= now ORDER BY relay_at.
            models.Index(
                fields=["relay_at"],
                condition=models.Q(published_at__isnull=True),
                name="outbox_pending_idx",
            ),
            # Pruning: DELETE … WHERE published_at < now - retention.
            models.Index(fields=["published_at"], name="outbox_published_idx"),
        ]

    def __str__(self):
        return f"{self.task}{tuple(self.args)}"


class IdempotencyKey(models.Model):
    """A client's `Idempotency-Key` for one create request and the response it got, so a
    retry of that request gets the same response instead of making a second object
    (`mlops_portal.core.api.idempotency`). Written in the transaction of the create, so a key
    never exists without its object. Kept IDEMPOTENCY_KEY_RETENTION_HOURS."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of the method, path and body: the same key with another request is refused.
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField(null=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # The reservation: a concurrent retry waits on this index until the first commits.
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_per_user"),
        ]
        indexes = [
            # Pruning: DELETE … WHERE created_at < now - retention.
            models.Index(fields=["created_at"], name="idempotency_created_idx"),
        ]

    def __str__(self):
        return f"{self.key} ({self.status_code})"


class Heartbeat(models.Model):
    """When a process that serves no HTTP last showed a sign of life: `beat` writes its row
    each time it sends a scheduled job (mlops_portal.celery), so /readyz can say when beat
    last ran."""

    name = models.CharField(max_length=50, unique=True)
    at = models.DateTimeField()
    host = models.CharField(max_length=255, blank=True)

    def __str__(self):
        return f"{self.name} at {self.at:%Y-%m-%d %H:%M:%S}"
