from django.db import models


class CheckState(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    UP = "up", "Up"
    DOWN = "down", "Down"
    PAUSED = "paused", "Paused"


class CheckKind(models.TextChoices):
    HTTP = "http", "HTTP probe"
    HEARTBEAT = "heartbeat", "Heartbeat (the job pings)"


class PingKind(models.TextChoices):
    SUCCESS = "success", "Success"
    START = "start", "Start"
    FAIL = "fail", "Failure"


class HttpMethod(models.TextChoices):
    GET = "GET", "GET"
    HEAD = "HEAD", "HEAD"


class Resolution(models.TextChoices):
    MINUTE = "minute", "Minute"
    HOUR = "hour", "Hour"


class Severity(models.TextChoices):
    SEV1 = "sev1", "SEV1"
    SEV2 = "sev2", "SEV2"
    SEV3 = "sev3", "SEV3"
    SEV4 = "sev4", "SEV4"


class IncidentState(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    MITIGATED = "mitigated", "Mitigated"
    RESOLVED = "resolved", "Resolved"


INCIDENT_TRANSITIONS = {
    IncidentState.OPEN: {
        IncidentState.ACKNOWLEDGED,
        IncidentState.MITIGATED,
        IncidentState.RESOLVED,
    },
    IncidentState.ACKNOWLEDGED: {IncidentState.MITIGATED, IncidentState.RESOLVED},
    # A mitigated incident whose check fails again is reopened by the automation.
    IncidentState.MITIGATED: {IncidentState.RESOLVED, IncidentState.OPEN},
}
UNRESOLVED_STATES = (IncidentState.OPEN, IncidentState.ACKNOWLEDGED, IncidentState.MITIGATED)


class IncidentSource(models.TextChoices):
    CHECK = "check", "Health check"
    RULE = "rule", "Alert rule"
    MANUAL = "manual", "Manual"
    API = "api", "API"


class IncidentEventKind(models.TextChoices):
    STATE = "state", "State change"
    NOTE = "note", "Note"
    EVIDENCE = "evidence", "Probe evidence"
    SEVERITY = "severity", "Severity change"


class RuleMetric(models.TextChoices):
    ERROR_RATE = "error_rate", "Error rate (% of /predict requests answered 5xx)"
    LATENCY_P95 = "latency_p95", "Latency p95 (ms)"
    REQUEST_RATE_DROP = "request_rate_drop", "Request-rate drop (% below the hour before)"
    # From feedback labels on logged predictions (monitoring.services.quality).
    LIVE_ACCURACY = "live_accuracy", "Live accuracy (% of labelled predictions right)"
    LIVE_MAE = "live_mae", "Live MAE (mean absolute error of labelled predictions)"
    # Drift (PSI of the latest drift windows, monitoring.services.drift): of one named
    # feature, of the most drifted feature, of the predictions.
    DRIFT_FEATURE = "drift_feature", "Drift of one feature (PSI)"
    DRIFT_MAX = "drift_max", "Drift of any feature (highest PSI)"
    DRIFT_PREDICTION = "drift_prediction", "Drift of the predictions (PSI)"


DRIFT_METRICS = (RuleMetric.DRIFT_FEATURE, RuleMetric.DRIFT_MAX, RuleMetric.DRIFT_PREDICTION)


class ModelTask(models.TextChoices):
    """What a version predicts, which decides its live-quality metric."""

    CLASSIFICATION = "classification", "Classification (accuracy)"
    REGRESSION = "regression", "Regression (MAE)"


class Comparison(models.TextChoices):
    GT = ">", ">"
    GE = ">=", "≥"
    LT = "<", "<"
    LE = "<=", "≤"


class RuleState(models.TextChoices):
    OK = "ok", "OK"
    FIRING = "firing", "Firing"


class DriftSubject(models.TextChoices):
    FEATURE = "feature", "Feature"
    PREDICTION = "prediction", "Prediction"


class DriftMethod(models.TextChoices):
    PSI = "psi", "PSI"
    KS = "ks", "Kolmogorov-Smirnov"
    CHI2 = "chi2", "Chi-squared"


class DriftStatus(models.TextChoices):
    OK = "ok", "OK"
    WARN = "warn", "Warning"
    DRIFT = "drift", "Drift"


class ReferenceSource(models.TextChoices):
    FILE = "file", "Reference data file"
    SAMPLE_INPUT = "sample_input", "Sample input"
