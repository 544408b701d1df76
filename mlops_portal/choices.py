from django.db import models

from mlops_portal.core.roles import Role


class TokenScope(models.TextChoices):
    """What an API token may do: everything its user may, or only read."""

    WRITE = "write", "Read and write"
    READ = "read", "Read only"


class NotificationEvent(models.TextChoices):
    DEPLOYMENT_NEEDS_APPROVAL = "deployment.needs_approval", "A deployment needs my approval"
    DEPLOYMENT_SUCCEEDED = "deployment.succeeded", "My deployment succeeded"
    DEPLOYMENT_FAILED = "deployment.failed", "My deployment failed"
    DEPLOYMENT_ROLLED_BACK = "deployment.rolled_back", "My deployment was rolled back"
    INCIDENT_OPENED = "incident.opened", "Incident opened on what I own or follow"
    INCIDENT_ACKNOWLEDGED = "incident.acknowledged", "Incident acknowledged on what I own or follow"
    INCIDENT_RESOLVED = "incident.resolved", "Incident resolved on what I own or follow"
    VALIDATION_FAILED = "version.validation_failed", "Validation failed on my version"
    DAILY_DIGEST = "digest.daily", "Daily digest of Today"


# What a user gets by email until they choose for themselves (the Notifications page).
DEFAULT_EVENTS_BY_ROLE = {
    Role.MLOPS_ENGINEER: frozenset(NotificationEvent.values),
    Role.DATA_SCIENTIST: frozenset(NotificationEvent.values)
    - {NotificationEvent.DEPLOYMENT_NEEDS_APPROVAL},
    Role.VIEWER: frozenset(
        {
            NotificationEvent.INCIDENT_OPENED,
            NotificationEvent.INCIDENT_RESOLVED,
            NotificationEvent.DAILY_DIGEST,
        }
    ),
}


# What a team channel may listen to: the digest is one person's morning, not a room's.
CHANNEL_EVENTS = tuple(e for e in NotificationEvent if e != NotificationEvent.DAILY_DIGEST)


class ChannelKind(models.TextChoices):
    CHAT = "chat", "Chat webhook (Slack, Mattermost, Rocket.Chat)"
    WEBHOOK = "webhook", "Signed JSON webhook"


class Medium(models.TextChoices):
    EMAIL = "email", "Email"
    CHAT = "chat", "Chat"
    WEBHOOK = "webhook", "Webhook"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    RETRYING = "retrying", "Retrying"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
