"""The abstract timeline entry every app's event rows extend (versions', deployments',
incidents'). Abstract, so it belongs to no app and creates no table."""

from django.conf import settings
from django.db import models


class TimelineEvent(models.Model):
    """One entry of an object's timeline (a version's, a deployment's, an incident's): who
    did it (None: the portal itself), when, and what they said."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["created_at", "pk"]
