from django.conf import settings
from django.db import models
from django.urls import reverse

from mlops_portal.core.timeline import TimelineEvent
from monitoring.choices import (
    UNRESOLVED_STATES,
    CheckKind,
    CheckState,
    Comparison,
    DriftMethod,
    DriftStatus,
    DriftSubject,
    HttpMethod,
    IncidentEventKind,
    IncidentSource,
    IncidentState,
    PingKind,
    ReferenceSource,
    Resolution,
    RuleMetric,
    RuleState,
    Severity,
)


class HealthCheck(models.Model):
    """An HTTP endpoint probed on a schedule, or a heartbeat: a batch job that pings the
    portal and is down when no ping came within its period plus grace. A check that follows
    a target probes the target's live endpoint and moves with each new deployment."""

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=CheckKind.choices, default=CheckKind.HTTP)
    target = models.ForeignKey(
        "deployments.Target", on_delete=models.CASCADE, null=True, blank=True,
        related_name="checks",
    )  # fmt: skip
    follows_target = models.BooleanField(default=False)
    url = models.CharField(max_length=500)
    method = models.CharField(max_length=4, choices=HttpMethod.choices, default=HttpMethod.GET)
    interval_seconds = models.PositiveIntegerField(default=30)
    timeout_seconds = models.FloatField(default=5.0)
    expected_statuses = models.JSONField(default=list)
    latency_threshold_ms = models.FloatField(null=True, blank=True)
    failures_before_down = models.PositiveIntegerField(default=3)
    enabled = models.BooleanField(default=True)
    state = models.CharField(max_length=10, choices=CheckState.choices, default=CheckState.UNKNOWN)
    consecutive_failures = models.PositiveIntegerField(default=0)
    first_failure_at = models.DateTimeField(null=True, blank=True)
    last_probe_at = models.DateTimeField(null=True, blank=True)
    last_ok = models.BooleanField(null=True)
    last_latency_ms = models.FloatField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    # When the next probe is due. The dispatcher claims due checks by moving this forward
    # in one conditional UPDATE, so two dispatchers never probe the same slot.
    next_due_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)  # the dispatcher run probing it
    snoozed_until = models.DateTimeField(null=True, blank=True)
    snooze_reason = models.CharField(max_length=300, blank=True)
    # Heartbeats: the job pings /ping/<ping_key>; the key is the only credential.
    ping_key = models.UUIDField(null=True, blank=True, unique=True, editable=False)
    period_seconds = models.PositiveIntegerField(null=True, blank=True)  # … or a cron schedule
    cron_expression = models.CharField(max_length=100, blank=True)
    cron_timezone = models.CharField(max_length=64, blank=True, default="UTC")
    grace_seconds = models.PositiveIntegerField(null=True, blank=True)
    last_ping_at = models.DateTimeField(null=True, blank=True)
    last_start_at = models.DateTimeField(null=True, blank=True)  # a run begun, not yet ended
    ping_deadline = models.DateTimeField(null=True, blank=True)  # down if no ping by then
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            # One "live endpoint" check per target.
            models.UniqueConstraint(
                fields=["target"],
                condition=models.Q(follows_target=True),
                name="healthcheck_one_follower_per_target",
            ),
        ]
        indexes = [
            # The dispatcher: enabled checks whose next_due_at has passed.
            models.Index(fields=["enabled", "next_due_at"], name="check_due_idx"),
            # The heartbeat job: enabled heartbeats whose ping deadline has passed.
            models.Index(
                fields=["ping_deadline"],
                condition=models.Q(kind="heartbeat", enabled=True),
                name="heartbeat_due_idx",
            ),
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("check-detail", args=[self.pk])


class MaintenanceWindow(models.Model):
    """No incident is opened for a check while a window covers it (its own, or its
    target's). Deploy jobs open an automatic one for their target until they end."""

    health_check = models.ForeignKey(
        HealthCheck, on_delete=models.CASCADE, null=True, blank=True, related_name="windows"
    )
    target = models.ForeignKey(
        "deployments.Target", on_delete=models.CASCADE, null=True, blank=True,
        related_name="maintenance_windows",
    )  # fmt: skip
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)  # open-ended while a deploy runs
    reason = models.CharField(max_length=300)
    automatic = models.BooleanField(default=False)
    deployment = models.ForeignKey(
        "deployments.Deployment", on_delete=models.CASCADE, null=True, blank=True,
        related_name="+",
    )  # fmt: skip
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )  # fmt: skip

    class Meta:
        ordering = ["-starts_at"]
        indexes = [models.Index(fields=["target", "ends_at"], name="window_target_idx")]

    def __str__(self):
        return self.reason


class ProbeResult(models.Model):
    """One probe. Kept for HEALTHCHECK_RESULT_RETENTION_DAYS, summarised in ProbeRollup."""

    id = models.BigAutoField(primary_key=True)
    health_check = models.ForeignKey(HealthCheck, on_delete=models.CASCADE, related_name="results")
    at = models.DateTimeField()
    ok = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [
            # Charts and roll-ups: one check's results in a time range.
            models.Index(fields=["health_check", "at"], name="result_check_at_idx"),
            # Roll-up and pruning: everything in a time range.
            models.Index(fields=["at"], name="result_at_idx"),
        ]

    def __str__(self):
        return f"{self.health_check_id} at {self.at}: {'ok' if self.ok else self.error}"


class Ping(models.Model):
    """One ping of a heartbeat check: a run's start, success or failure, with its exit
    status, its duration (since the run's start ping) and the tail of its log."""

    id = models.BigAutoField(primary_key=True)
    health_check = models.ForeignKey(HealthCheck, on_delete=models.CASCADE, related_name="pings")
    at = models.DateTimeField()
    kind = models.CharField(max_length=7, choices=PingKind.choices)
    exit_status = models.SmallIntegerField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    body = models.TextField(blank=True)  # the last HEARTBEAT_BODY_KEEP bytes sent
    remote_addr = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [
            # The check page's runs and the incident's evidence: one check's latest pings.
            models.Index(fields=["health_check", "-at"], name="ping_check_at_idx"),
            # Pruning.
            models.Index(fields=["at"], name="ping_at_idx"),
        ]

    def __str__(self):
        return f"{self.health_check_id} {self.kind} at {self.at}"


class ProbeRollup(models.Model):
    """Per check and minute (or hour): count, failures and latency p50/p95/max, so
    long-range charts never scan raw results."""

    health_check = models.ForeignKey(HealthCheck, on_delete=models.CASCADE, related_name="rollups")
    resolution = models.CharField(max_length=6, choices=Resolution.choices)
    bucket_start = models.DateTimeField()
    count = models.PositiveIntegerField()
    failures = models.PositiveIntegerField()
    latency_p50 = models.FloatField(null=True)
    latency_p95 = models.FloatField(null=True)
    latency_max = models.FloatField(null=True)

    class Meta:
        ordering = ["bucket_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["health_check", "resolution", "bucket_start"], name="rollup_unique_bucket"
            )
        ]

    def __str__(self):
        return f"{self.health_check_id} {self.resolution} {self.bucket_start}"


class IncidentQuerySet(models.QuerySet):
    def for_list(self):
        """Unresolved first, newest first; what a list row shows in one query."""
        resolved_last = models.Case(
            models.When(state=IncidentState.RESOLVED, then=1),
            default=0,
            output_field=models.IntegerField(),
        )
        return self.select_related("target", "commander", "version__model").order_by(
            resolved_last, "-opened_at", "-pk"
        )


class Incident(models.Model):
    """Something is wrong in production; its timeline is IncidentEvent rows."""

    title = models.CharField(max_length=300)
    severity = models.CharField(max_length=4, choices=Severity.choices, default=Severity.SEV3)
    state = models.CharField(
        max_length=12, choices=IncidentState.choices, default=IncidentState.OPEN
    )
    source = models.CharField(max_length=10, choices=IncidentSource.choices)
    description = models.TextField(blank=True)
    health_check = models.ForeignKey(
        HealthCheck, on_delete=models.SET_NULL, null=True, blank=True, related_name="incidents"
    )
    alert_rule = models.ForeignKey(
        "monitoring.AlertRule", on_delete=models.SET_NULL, null=True, blank=True,
        related_name="incidents",
    )  # fmt: skip
    target = models.ForeignKey(
        "deployments.Target", on_delete=models.SET_NULL, null=True, blank=True,
        related_name="incidents",
    )  # fmt: skip
    deployment = models.ForeignKey(
        "deployments.Deployment", on_delete=models.SET_NULL, null=True, blank=True,
        related_name="incidents", help_text="The likely cause.",
    )  # fmt: skip
    version = models.ForeignKey(
        "deployments.ModelVersion", on_delete=models.SET_NULL, null=True, blank=True,
        related_name="incidents",
    )  # fmt: skip
    commander = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="commanded_incidents",
    )  # fmt: skip
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )  # fmt: skip
    opened_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    mitigated_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = IncidentQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at", "-pk"]
        constraints = [
            # Never two unresolved automatic incidents for one check.
            models.UniqueConstraint(
                fields=["health_check"],
                condition=models.Q(source="check", state__in=list(UNRESOLVED_STATES)),
                name="incident_one_open_per_check",
            ),
            # … nor for one alert rule.
            models.UniqueConstraint(
                fields=["alert_rule"],
                condition=models.Q(source="rule", state__in=list(UNRESOLVED_STATES)),
                name="incident_one_open_per_rule",
            ),
        ]
        indexes = [
            # The incident list: open first, newest first, filtered by severity/state/target.
            models.Index(fields=["state", "-opened_at"], name="incident_state_idx"),
            models.Index(fields=["target", "state"], name="incident_target_idx"),
            # Dashboards and Today: incidents opened in a date range.
            models.Index(fields=["opened_at"], name="incident_opened_idx"),
        ]

    def __str__(self):
        return f"#{self.pk} {self.title}"

    def get_absolute_url(self):
        return reverse("incident-detail", args=[self.pk])

    @property
    def time_to_acknowledge(self):
        return self.acknowledged_at - self.opened_at if self.acknowledged_at else None

    @property
    def time_to_resolve(self):
        return self.resolved_at - self.opened_at if self.resolved_at else None

    @property
    def is_resolved(self) -> bool:
        return self.state == IncidentState.RESOLVED


# Time to acknowledge and to resolve an incident, computed by the database (averages,
# medians); MTTA and MTTR are their means.
MTTA = models.ExpressionWrapper(
    models.F("acknowledged_at") - models.F("opened_at"), output_field=models.DurationField()
)
MTTR = models.ExpressionWrapper(
    models.F("resolved_at") - models.F("opened_at"), output_field=models.DurationField()
)


class IncidentEvent(TimelineEvent):
    """The incident's timeline: state changes, notes, probe evidence, severity changes."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=10, choices=IncidentEventKind.choices)
    from_state = models.CharField(max_length=12, blank=True)
    to_state = models.CharField(max_length=12, blank=True)
    data = models.JSONField(default=dict, blank=True)

    def __str__(self):
        return f"#{self.incident_id} {self.kind}: {self.message[:60]}"


class ServingScrapeState(models.Model):
    """The last scrape of a live deployment's /metrics: the cumulative counters it read,
    which the next scrape turns into deltas, and whether it worked."""

    deployment = models.OneToOneField(
        "deployments.Deployment", on_delete=models.CASCADE, primary_key=True,
        related_name="scrape_state",
    )  # fmt: skip
    scraped_at = models.DateTimeField(null=True, blank=True)
    counters = models.JSONField(default=dict, blank=True)  # {} until a scrape succeeds
    last_ok = models.BooleanField(null=True)
    last_error = models.CharField(max_length=300, blank=True)
    consecutive_errors = models.PositiveIntegerField(default=0)

    def __str__(self):
        return f"deployment {self.deployment_id}: {'ok' if self.last_ok else self.last_error}"


class ServingRollup(models.Model):
    """Per deployment and minute (or hour): /predict requests, errors, latency and
    predictions per class, from the deltas of the server's counters. The latency histogram
    is kept (counts per bucket bound) so hours and ranges merge exactly; p50/p95/p99 are
    estimated from it as Prometheus' histogram_quantile does."""

    id = models.BigAutoField(primary_key=True)
    deployment = models.ForeignKey(
        "deployments.Deployment", on_delete=models.CASCADE, related_name="serving_rollups"
    )
    version = models.ForeignKey(
        "deployments.ModelVersion", on_delete=models.CASCADE, related_name="serving_rollups"
    )  # the deployment's, copied so the version page needs no join
    resolution = models.CharField(max_length=6, choices=Resolution.choices)
    bucket_start = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)  # 5xx: the model or server failed
    client_errors = models.PositiveIntegerField(default=0)  # 4xx: malformed input
    latency_buckets = models.JSONField(default=dict)  # {"0.005": n, …, "+Inf": n}, per bucket
    latency_p50 = models.FloatField(null=True)  # milliseconds
    latency_p95 = models.FloatField(null=True)
    latency_p99 = models.FloatField(null=True)
    predictions = models.JSONField(default=dict)  # {"class label": n}
    scrapes = models.PositiveIntegerField(default=0)
    scrape_errors = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["bucket_start"]
        constraints = [
            # Also the index of the deployment page: one deployment's buckets in a range.
            models.UniqueConstraint(
                fields=["deployment", "resolution", "bucket_start"],
                name="serving_rollup_unique_bucket",
            )
        ]
        indexes = [
            # The version page: all its deployments' buckets in a range, summed per bucket.
            models.Index(
                fields=["version", "resolution", "bucket_start"], name="serving_version_idx"
            ),
            # Pruning old minute buckets.
            models.Index(fields=["resolution", "bucket_start"], name="serving_prune_idx"),
        ]

    def __str__(self):
        return f"{self.deployment_id} {self.resolution} {self.bucket_start}"

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


class AlertRule(models.Model):
    """A condition on the serving metrics of a model's (or a target's) live deployments:
    `metric comparison threshold` over the last `for_minutes` minutes. Firing opens one
    incident through the incident machinery; quiet again, it mitigates and then resolves."""

    name = models.CharField(max_length=200)
    model = models.ForeignKey(
        "deployments.RegisteredModel", on_delete=models.CASCADE, null=True, blank=True,
        related_name="alert_rules",
    )  # fmt: skip
    target = models.ForeignKey(
        "deployments.Target", on_delete=models.CASCADE, null=True, blank=True,
        related_name="alert_rules",
    )  # fmt: skip
    metric = models.CharField(max_length=20, choices=RuleMetric.choices)
    feature = models.CharField(max_length=200, blank=True)  # drift_feature: which one
    comparison = models.CharField(max_length=2, choices=Comparison.choices, default=Comparison.GT)
    threshold = models.FloatField()
    for_minutes = models.PositiveIntegerField(default=5)
    severity = models.CharField(max_length=4, choices=Severity.choices, default=Severity.SEV3)
    enabled = models.BooleanField(default=True)
    muted = models.BooleanField(default=False)
    mute_reason = models.CharField(max_length=300, blank=True)
    state = models.CharField(max_length=6, choices=RuleState.choices, default=RuleState.OK)
    firing_since = models.DateTimeField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(model__isnull=False, target__isnull=True)
                | models.Q(model__isnull=True, target__isnull=False),
                name="alert_rule_model_or_target",
            )
        ]
        # The evaluation job reads every enabled rule: a handful, no index needed.

    def __str__(self):
        return self.name

    @property
    def condition(self) -> str:
        metric = f"{self.metric}({self.feature})" if self.feature else self.metric
        return f"{metric} {self.comparison} {self.threshold:g} for {self.for_minutes} min"


class LoggedPrediction(models.Model):
    """One row of a request the model server sampled (PREDICTION_SAMPLE_RATE) into the
    prediction log, collected from it by the worker. The drift job compares the features of
    a version's recent rows with its reference data; feedback fills in `label`, and the
    live-quality job compares labels with predictions."""

    id = models.BigAutoField(primary_key=True)
    deployment = models.ForeignKey(
        "deployments.Deployment", on_delete=models.CASCADE, related_name="logged_predictions"
    )
    version = models.ForeignKey(
        "deployments.ModelVersion", on_delete=models.CASCADE, related_name="logged_predictions"
    )  # the deployment's, copied so the version's drift and quality jobs need no join
    prediction_id = models.CharField(max_length=64)  # what the server returned to the caller
    row = models.PositiveIntegerField(default=0)  # the row's index in its request
    logged_at = models.DateTimeField()
    features = models.JSONField()  # the row's input values, in the model's column order
    prediction = models.JSONField()  # the model's output for the row
    label = models.JSONField(null=True, blank=True)  # the ground truth, from feedback
    labelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["logged_at", "pk"]
        constraints = [
            # Collecting is at-least-once; the second copy of a row is dropped.
            models.UniqueConstraint(
                fields=["prediction_id", "row"], name="logged_prediction_unique_row"
            )
        ]
        indexes = [
            # Drift and live quality: one version's rows in a time window.
            models.Index(fields=["version", "logged_at"], name="logged_prediction_version_idx"),
            models.Index(fields=["deployment", "logged_at"], name="logged_prediction_deploy_idx"),
            # Retention: the oldest rows first.
            models.Index(fields=["logged_at"], name="logged_prediction_age_idx"),
        ]

    def __str__(self):
        return f"{self.prediction_id}[{self.row}]"


class LiveQuality(models.Model):
    """Per version and hour of prediction: how many logged predictions got a feedback label,
    how many of them were right (classification) and their summed absolute error
    (regression), so live accuracy and MAE merge exactly over any range of hours.
    Recomputed from LoggedPrediction by `monitoring.services.quality.roll_up`."""

    id = models.BigAutoField(primary_key=True)
    version = models.ForeignKey(
        "deployments.ModelVersion", on_delete=models.CASCADE, related_name="live_quality"
    )
    hour = models.DateTimeField()  # when the predictions were made, truncated to the hour
    labelled = models.PositiveIntegerField(default=0)
    correct = models.PositiveIntegerField(default=0)  # label equal to the prediction
    absolute_error = models.FloatField(null=True, blank=True)  # sum; numbers only

    class Meta:
        ordering = ["hour"]
        constraints = [
            # Also the index of the version page's chart: one version's hours in a range.
            models.UniqueConstraint(fields=["version", "hour"], name="live_quality_unique_hour")
        ]

    def __str__(self):
        return f"{self.version_id} {self.hour}: {self.correct}/{self.labelled}"

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def mae(self) -> float | None:
        if not self.labelled or self.absolute_error is None:
            return None
        return self.absolute_error / self.labelled


class DriftReference(models.Model):
    """What a version's live inputs are compared with, summarised once (the hourly drift
    job then reads one row, not the file): per feature its kind, PSI bins and reference
    shares, and for numeric features a sorted sample for the KS test. The predictions'
    reference is the version's first window of logged predictions, frozen when seen."""

    version = models.OneToOneField(
        "deployments.ModelVersion", on_delete=models.CASCADE, primary_key=True,
        related_name="drift_reference",
    )  # fmt: skip
    source = models.CharField(max_length=12, choices=ReferenceSource.choices)
    rows = models.PositiveIntegerField()
    features = models.JSONField()  # [{"name", "kind", "edges"|"categories", "shares", …}]
    prediction = models.JSONField(null=True, blank=True)  # the same for the predictions
    error = models.CharField(max_length=500, blank=True)  # why no drift can be computed
    computed_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"reference of version {self.version_id} ({self.rows} rows)"


class DriftScore(models.Model):
    """One drift figure: a version's feature (or its predictions) in one window of logged
    rows, by one method. PSI sets the status (< 0.1 ok, < 0.25 warn, else drift); KS and
    chi-squared rows carry their statistic as score and their p-value."""

    id = models.BigAutoField(primary_key=True)
    version = models.ForeignKey(
        "deployments.ModelVersion", on_delete=models.CASCADE, related_name="drift_scores"
    )
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    subject = models.CharField(max_length=10, choices=DriftSubject.choices)
    feature = models.CharField(max_length=200, blank=True)  # blank for the predictions
    method = models.CharField(max_length=4, choices=DriftMethod.choices)
    score = models.FloatField()
    p_value = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=5, choices=DriftStatus.choices)
    rows = models.PositiveIntegerField()  # logged rows in the window

    class Meta:
        ordering = ["window_end", "feature"]
        constraints = [
            # A window is scored once (a second run of the same minute adds nothing).
            models.UniqueConstraint(
                fields=["version", "window_end", "subject", "feature", "method"],
                name="drift_score_unique",
            )
        ]
        indexes = [
            # The version page (latest window, chart of a week) and the drift rules (one
            # version's PSI rows since a time): one version, one method, a time range.
            models.Index(fields=["version", "method", "window_end"], name="drift_version_idx"),
            # Retention: the oldest windows first.
            models.Index(fields=["window_end"], name="drift_age_idx"),
        ]

    def __str__(self):
        return f"{self.version_id} {self.feature or self.subject} {self.method}={self.score:.3f}"
