from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Coalesce
from django.urls import reverse

from deployments.choices import (
    FINAL_STATES,
    Backend,
    DeploymentEventKind,
    DeploymentState,
    Environment,
    Flavor,
    QueuePolicy,
    Stage,
    Strategy,
    VersionEventKind,
    VersionStatus,
)
from deployments.storage import field_storage
from mlops_portal.core.timeline import TimelineEvent

model_name_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$",
    "Use lowercase letters, digits and hyphens (e.g. churn-classifier), at most 100.",
)


class RegisteredModelQuerySet(models.QuerySet):
    def for_list(self):
        """Everything a list row shows, in a constant number of queries."""
        return self.select_related("owner")

    def for_api(self):
        """What the API shows: the owner's name joined in, not the whole user row."""
        return self.annotate(owner_name=models.F("owner__username"))


class RegisteredModel(models.Model):
    """A named model in the registry; its versions are the deployable artifacts."""

    name = models.CharField(max_length=100, unique=True, validators=[model_name_validator])
    description = models.TextField(blank=True, help_text="Markdown.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_models"
    )
    team = models.CharField(max_length=100, blank=True)
    # People told about its incidents besides the owner (notifications).
    followers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="followed_models"
    )
    # Sorted tag names. A JSON list, not a join: every list row shows them, and a tag
    # filter is a containment test (deployments.filters.tagged).
    tags = models.JSONField(default=list, blank=True)
    # MLflow's key/value tags ({"team": "growth"}), set through the MLflow API or the pages.
    mlflow_tags = models.JSONField(default=dict, blank=True)
    # The last number handed out; bumped with a conditional UPDATE, never read-then-write.
    # Versions are never deleted and a refused registration rolls its number back, so this
    # is also the number of versions.
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

    @property
    def version_count(self) -> int:
        return self.latest_version_number


class ModelVersionQuerySet(models.QuerySet):
    def for_list(self):
        """Everything a version row shows, in a constant number of queries."""
        return self.select_related("model", "registered_by")

    def for_api(self):
        """What the API shows: names joined in instead of whole related rows (a 25-row page
        built 50 model and user objects just to read two names)."""
        return self.annotate(
            model_name=models.F("model__name"),
            registered_by_name=models.F("registered_by__username"),
        )


class ModelVersion(models.Model):
    """One immutable, numbered artifact of a model, with its metrics and validation state.

    Only description, tags and `archived` change after registration."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    # In the ARTIFACT_STORAGE (deployments.storage), chosen at runtime, not in migrations.
    artifact = models.FileField(upload_to="artifacts/%Y/%m/", blank=True, storage=field_storage)
    artifact_uri = models.CharField(max_length=1000, blank=True)
    # Where a `models:/m-<id>` source (an MLflow 3 logged model) resolved to when the
    # validation job fetched it: the logged model's artifact URI on the tracking server.
    # MLflow records the same and answers it as the version's download URI.
    storage_location = models.CharField(max_length=1000, blank=True)
    artifact_size = models.BigIntegerField(null=True, blank=True)
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    # The artifact's format: how the validation job and the model server load it.
    flavor = models.CharField(max_length=20, choices=Flavor.choices, default=Flavor.SKLEARN)
    # An MLflow model's facts, read from its MLmodel by the validation job: its flavors
    # ("lightgbm", "python_function"), signature {"inputs": [{name, type}], "outputs": …},
    # pinned pip requirements, and those this environment does not satisfy.
    mlflow_flavors = models.JSONField(default=list, blank=True)
    signature = models.JSONField(default=dict, blank=True)
    requirements = models.JSONField(default=list, blank=True)
    missing_requirements = models.JSONField(default=list, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    params = models.JSONField(default=dict, blank=True)
    source_url = models.CharField(max_length=500, blank=True)
    description = models.TextField(blank=True)
    sample_input = models.JSONField(default=list, blank=True)
    # The rows live inputs are compared with for drift (CSV or Parquet, deployments.reference),
    # in the artifact's storage; without it the sample input stands in.
    reference_data = models.FileField(
        upload_to="reference/%Y/%m/", blank=True, storage=field_storage
    )
    tags = models.JSONField(default=list, blank=True)
    # MLflow's key/value tags, its run id (searchable: `run_id = '…'`) and stage.
    mlflow_tags = models.JSONField(default=dict, blank=True)
    run_id = models.CharField(max_length=100, blank=True)
    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.NONE)
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
            # MLflow's search_model_versions("run_id = '…'").
            models.Index(
                fields=["run_id"], condition=~models.Q(run_id=""), name="version_run_id_idx"
            ),
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


class ModelAlias(models.Model):
    """A name for one version of a model ("champion"), moved from version to version.

    Deploy requests may name a version by its alias; MLflow clients resolve
    `models:/name@alias` through it. One alias names one version of its model."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    alias = models.CharField(max_length=255)
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="aliases")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["alias"]
        constraints = [
            models.UniqueConstraint(fields=["model", "alias"], name="modelalias_unique_alias"),
        ]

    def __str__(self):
        return f"{self.model_id}@{self.alias}"


class VersionEvent(TimelineEvent):
    """The timeline of a version: who did what, when, and why."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=30, choices=VersionEventKind.choices)

    def __str__(self):
        return f"{self.version}: {self.get_kind_display()}"


class TargetQuerySet(models.QuerySet):
    def with_backlog(self):
        """Annotate `queued_count`, the approved deployments waiting on each target, as
        one correlated COUNT (deploy_target_state_idx): no query per row."""
        waiting = (
            Deployment.objects.filter(target=models.OuterRef("pk"), state=DeploymentState.QUEUED)
            .order_by()
            .values("target")
            .annotate(count=models.Count("pk"))
            .values("count")
        )
        return self.annotate(queued_count=Coalesce(models.Subquery(waiting), 0))


class Target(models.Model):
    """Where a model version can be deployed: an environment served by one backend."""

    name = models.CharField(max_length=100, unique=True, validators=[model_name_validator])
    environment = models.CharField(max_length=20, choices=Environment.choices)
    backend = models.CharField(max_length=20, choices=Backend.choices, default=Backend.LOCAL)
    # Validated per backend by deployments.backends; secrets are never shown back.
    backend_settings = models.JSONField(default=dict, blank=True)
    requires_approval = models.BooleanField(default=False)
    # An engineer's rollback may skip approval on targets that say so (fast recovery).
    rollback_skips_approval = models.BooleanField(default=False)
    auto_rollback = models.BooleanField(default=False)
    verification_window_seconds = models.PositiveIntegerField(default=60)
    # Supersede (default): a newer approved request cancels the older ones still waiting,
    # so a burst of requests deploys once, the newest (services.rollouts._supersede_older).
    queue_policy = models.CharField(
        max_length=20, choices=QueuePolicy.choices, default=QueuePolicy.SUPERSEDE
    )
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    # People told about its incidents besides its creator (notifications).
    followers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="followed_targets"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TargetQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("target-detail", args=[self.name])


class DeploymentQuerySet(models.QuerySet):
    def for_list(self):
        """Everything a deployment row shows, in a constant number of queries."""
        return self.select_related("target", "version__model", "requested_by", "approved_by")

    def live(self):
        return self.filter(state=DeploymentState.SUCCEEDED)


class Deployment(models.Model):
    """One request to run a model version on a target, and everything that happened to it.

    History is append-only: a rollback is a new Deployment of the previous good version."""

    target = models.ForeignKey(Target, on_delete=models.PROTECT, related_name="deployments")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    state = models.CharField(
        max_length=20, choices=DeploymentState.choices, default=DeploymentState.REQUESTED
    )
    reason = models.TextField()
    change_ticket = models.URLField(max_length=500, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="requested_deployments"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="approved_deployments",
    )
    decision_comment = models.TextField(blank=True)
    rollback_of = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="rollbacks"
    )
    endpoint = models.CharField(max_length=500, blank=True)
    # Backend bookkeeping (local: pid and port of the model server; webhook: remote id).
    backend_state = models.JSONField(default=dict, blank=True)
    # Set in the transaction that ends a started deployment (replaced, rolled back or
    # failed): whatever its backend started must be stopped. The job clears it once it has
    # stopped the server; if the job dies first, the reconciler does.
    stop_pending = models.BooleanField(default=False)
    failure_reason = models.TextField(blank=True)
    # A canary (services.canary): the traffic percentages it holds in turn, each for
    # `canary_step_seconds`, then promoted. While it runs, `canary_weight` is the share it
    # takes now and `canary_step` the index of the step whose hold is under way (its job
    # claims the step by moving it on, so two deciders never both act).
    strategy = models.CharField(
        max_length=20, choices=Strategy.choices, default=Strategy.ALL_AT_ONCE
    )
    canary_steps = models.JSONField(default=list, blank=True)
    canary_step_seconds = models.PositiveIntegerField(default=0)
    canary_weight = models.PositiveSmallIntegerField(null=True, blank=True)
    canary_step = models.PositiveSmallIntegerField(default=0)
    # The stable deployment the canary is compared with, and the metrics read at the start
    # of the step under way: {"stable": counters, "canary": counters}.
    canary_baseline = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DeploymentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # One rollout at a time per target; a second waits in `queued`.
            models.UniqueConstraint(
                fields=["target"],
                condition=models.Q(state="running"),
                name="deployment_one_running_per_target",
            ),
            # At most one live deployment per target.
            models.UniqueConstraint(
                fields=["target"],
                condition=models.Q(state="succeeded"),
                name="deployment_one_live_per_target",
            ),
        ]
        indexes = [
            # The deployments list filtered by target/state, newest first.
            models.Index(fields=["target", "state", "-created_at"], name="deploy_target_state_idx"),
            # The reconciler: queued/running rows whose lease has expired.
            models.Index(fields=["state", "lease_expires_at"], name="deploy_state_lease_idx"),
            # Dashboards: deployments that went live / were requested in a date range.
            models.Index(fields=["finished_at"], name="deploy_finished_idx"),
            models.Index(fields=["created_at"], name="deploy_created_idx"),
            # The reconciler: ended deployments whose model server is still to be stopped.
            models.Index(
                fields=["stop_pending"],
                condition=models.Q(stop_pending=True),
                name="deploy_stop_pending_idx",
            ),
        ]

    def __str__(self):
        return f"#{self.pk} {self.version} → {self.target}"

    def get_absolute_url(self):
        return reverse("deployment-detail", args=[self.pk])

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES or self.state == DeploymentState.SUCCEEDED

    @property
    def canary_step_number(self) -> int | None:
        """Which of `canary_steps` (from 1) a running canary is at, read from the share it
        takes now (`canary_step` is a claim marker while a decision acts); None when it is
        not splitting traffic."""
        if self.canary_weight not in self.canary_steps:
            return None
        return self.canary_steps.index(self.canary_weight) + 1

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class DeploymentEvent(TimelineEvent):
    """The timeline of a deployment: state changes (who, when, why), comments, overrides."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=DeploymentEventKind.choices)
    from_state = models.CharField(max_length=20, blank=True)
    to_state = models.CharField(max_length=20, blank=True)

    def __str__(self):
        return f"{self.deployment}: {self.kind} {self.to_state}"


class DeploymentLogLine(models.Model):
    """One timestamped line of a deploy job's log, written as the job goes."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="log_lines")
    created_at = models.DateTimeField(auto_now_add=True)
    message = models.TextField()

    class Meta:
        ordering = ["pk"]  # the live log page asks for lines after the last pk it has
        indexes = [
            # Retention: DELETE … WHERE created_at < now - JOB_LOG_RETENTION_DAYS.
            models.Index(fields=["created_at"], name="deploy_log_created_idx"),
        ]

    def __str__(self):
        return self.message
