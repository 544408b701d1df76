from django.conf import settings
from django.db import models
from django.urls import reverse


class Page(models.Model):
    """A documentation page. Its text is the latest PageRevision's; `revision_number` is
    what an editor started from, so a second concurrent save is detected, not lost."""

    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=120, unique=True)
    body = models.TextField(blank=True, help_text="Markdown.")
    tags = models.JSONField(default=list, blank=True)
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children"
    )
    linked_models = models.ManyToManyField(
        "deployments.RegisteredModel", blank=True, related_name="pages"
    )
    linked_targets = models.ManyToManyField("deployments.Target", blank=True, related_name="pages")
    revision_number = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]

    def __str__(self):
        return self.title

    def get_absolute_url(self):
        return reverse("page-detail", args=[self.slug])


class PageRevision(models.Model):
    """One saved version of a page: who, when, why (summary), and the full text."""

    page = models.ForeignKey(Page, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    summary = models.CharField(max_length=300, blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["page", "number"], name="revision_unique_number")
        ]

    def __str__(self):
        return f"{self.page.slug} r{self.number}"


class PageAttachment(models.Model):
    """An image uploaded with a page, shown inline with ![alt](url)."""

    page = models.ForeignKey(Page, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to="docs/%Y/%m/")
    name = models.CharField(max_length=200)
    size = models.PositiveIntegerField()
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name
