from django.db import models


class VersionStatus(models.TextChoices):
    REGISTERED = "registered", "Registered"
    VALIDATING = "validating", "Validating"
    READY = "ready", "Ready"
    INVALID = "invalid", "Invalid"


class Flavor(models.TextChoices):
    SKLEARN = "sklearn", "scikit-learn (joblib)"
    MLFLOW = "mlflow", "MLflow model (pyfunc)"


class VersionEventKind(models.TextChoices):
    REGISTERED = "registered", "Registered"
    EDITED = "edited", "Edited"
    ARCHIVED = "archived", "Archived"
    UNARCHIVED = "unarchived", "Unarchived"
    VALIDATION_STARTED = "validation_started", "Validation started"
    VALIDATED = "validated", "Validated"
    VALIDATION_FAILED = "validation_failed", "Validation failed"
    ALIAS_SET = "alias_set", "Alias set"
    ALIAS_REMOVED = "alias_removed", "Alias removed"
    STAGE_CHANGED = "stage_changed", "Stage changed"


class Stage(models.TextChoices):
    """MLflow's (deprecated) stage of a version; "Archived" is the version's `archived` flag,
    so it is not stored here (deployments.mlflow_api.wire.current_stage)."""

    NONE = "none", "None"
    STAGING = "staging", "Staging"
    PRODUCTION = "production", "Production"


class Environment(models.TextChoices):
    DEVELOPMENT = "development", "Development"
    STAGING = "staging", "Staging"
    PRODUCTION = "production", "Production"


class Backend(models.TextChoices):
    LOCAL = "local", "Local process (this host)"
    WEBHOOK = "webhook", "Webhook to an external CD system"
    KSERVE = "kserve", "KServe InferenceService on Kubernetes"
    RAY = "ray", "Ray Serve application on a Ray cluster"


class QueuePolicy(models.TextChoices):
    """What a target does with approved deployments that wait while another one runs."""

    SUPERSEDE = "supersede", "Supersede: only the newest waiting request runs"
    QUEUE = "queue", "Queue: every request runs, in order"


QUEUE_POLICY_HELP = (
    "When approved deployments wait while another one runs: supersede cancels the older "
    "waiting ones, so only the newest deploys; queue runs every one in turn."
)


class Strategy(models.TextChoices):
    """How a deployment replaces the live one (DeploymentState stays the same for both: a
    canary is `running` while its steps hold, with `Deployment.canary_weight` set)."""

    ALL_AT_ONCE = "all_at_once", "All at once (blue/green)"
    CANARY = "canary", "Canary: a share of the traffic first, analysed step by step"


class DeploymentState(models.TextChoices):
    REQUESTED = "requested", "Requested"
    APPROVED = "approved", "Approved"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"
    SUPERSEDED = "superseded", "Superseded"
    ROLLED_BACK = "rolled_back", "Rolled back"


# The state machine: which states each state may move to (DESIGN.md, "Core state machines").
DEPLOYMENT_TRANSITIONS = {
    DeploymentState.REQUESTED: {
        DeploymentState.APPROVED,
        DeploymentState.REJECTED,
        DeploymentState.CANCELLED,
    },
    DeploymentState.APPROVED: {DeploymentState.QUEUED},
    # queued → cancelled: a newer request superseded it (Target.queue_policy "supersede").
    DeploymentState.QUEUED: {
        DeploymentState.RUNNING,
        DeploymentState.FAILED,
        DeploymentState.CANCELLED,
    },
    DeploymentState.RUNNING: {DeploymentState.SUCCEEDED, DeploymentState.FAILED},
    DeploymentState.SUCCEEDED: {DeploymentState.SUPERSEDED, DeploymentState.ROLLED_BACK},
}
ACTIVE_STATES = (DeploymentState.QUEUED, DeploymentState.RUNNING)
FINAL_STATES = (
    DeploymentState.FAILED,
    DeploymentState.REJECTED,
    DeploymentState.CANCELLED,
    DeploymentState.SUPERSEDED,
    DeploymentState.ROLLED_BACK,
)
WAS_LIVE_STATES = (
    DeploymentState.SUCCEEDED,
    DeploymentState.SUPERSEDED,
    DeploymentState.ROLLED_BACK,
)


class DeploymentEventKind(models.TextChoices):
    STATE = "state", "State change"
    COMMENT = "comment", "Comment"
    OVERRIDE = "override", "Policy override"
    NOTE = "note", "Note"
    CANARY = "canary", "Canary step or decision"
