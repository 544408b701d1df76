from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse

from deployments.choices import Flavor, VersionEventKind, VersionStatus

model_name_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$",
    "Use lowercase letters, digits and hyphens (e.g. churn-classifier), at most 100.",
)


class Tag(models.Model):
    """A free label shared by models and versions (e.g. `nlp`, `champion`)."""

    name = models.CharField(max_length=50, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class RegisteredModelQuerySet(models.QuerySet):
    def for_list(self):
        """Everything a list row shows, in a constant number of queries."""
        return (
            self.select_related("owner")
            .prefetch_related("tags")
            .annotate(version_count=models.Count("versions", distinct=True))
            .order_by("name")  # Meta.ordering is dropped from GROUP BY queries
        )


class RegisteredModel(models.Model):
    """A named model in the registry; its versions are the deployable artifacts."""

    name = models.CharField(max_length=100, unique=True, validators=[model_name_validator])
    description = models.TextField(blank=True, help_text="Markdown.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_models"
    )
    team = models.CharField(max_length=100, blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="models")
    # The last number handed out; bumped with a conditional UPDATE, never read-then-write.
    latest_version_number = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RegisteredModelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [
            # Model list filtered by team (?team=).
            models.Index(fields=["team"], name="regmodel_team_idx"),
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("model-detail", args=[self.name])


class ModelVersionQuerySet(models.QuerySet):
    def for_list(self):
        """Everything a version row shows, in a constant number of queries."""
        return self.select_related("model", "registered_by").prefetch_related("tags")


class ModelVersion(models.Model):
    """One immutable, numbered artifact of a model, with its metrics and validation state.

    Only description, tags and `archived` change after registration."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    artifact = models.FileField(upload_to="artifacts/%Y/%m/", blank=True)
    artifact_uri = models.CharField(max_length=1000, blank=True)
    artifact_size = models.BigIntegerField(null=True, blank=True)
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    flavor = models.CharField(max_length=20, choices=Flavor.choices, default=Flavor.SKLEARN)
    metrics = models.JSONField(default=dict, blank=True)
    params = models.JSONField(default=dict, blank=True)
    source_url = models.CharField(max_length=500, blank=True)
    description = models.TextField(blank=True)
    sample_input = models.JSONField(default=list, blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="versions")
    status = models.CharField(
        max_length=20, choices=VersionStatus.choices, default=VersionStatus.REGISTERED
    )
    status_detail = models.TextField(blank=True)
    validation_attempts = models.PositiveIntegerField(default=0)
    validation_started_at = models.DateTimeField(null=True, blank=True)
    validated_at = models.DateTimeField(null=True, blank=True)
    archived = models.BooleanField(default=False)
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="registered_versions"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["model", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["model", "number"], name="modelversion_unique_number"),
            models.CheckConstraint(
                condition=~models.Q(artifact="") | ~models.Q(artifact_uri=""),
                name="modelversion_has_artifact",
            ),
        ]
        indexes = [
            # The reconciler's "versions stuck in validating" query, and ?status= filters.
            models.Index(fields=["status", "validation_started_at"], name="version_status_idx"),
        ]

    def __str__(self):
        return f"{self.model.name} v{self.number}"

    def get_absolute_url(self):
        return reverse("version-detail", args=[self.model.name, self.number])

    @property
    def artifact_location(self) -> str:
        return self.artifact.name if self.artifact else self.artifact_uri

    @property
    def is_final(self) -> bool:
        return self.status in (VersionStatus.READY, VersionStatus.INVALID)


class VersionEvent(models.Model):
    """The timeline of a version: who did what, when, and why."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=30, choices=VersionEventKind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self):
        return f"{self.version}: {self.get_kind_display()}"
