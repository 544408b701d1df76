from django.db import models


class VersionStatus(models.TextChoices):
    REGISTERED = "registered", "Registered"
    VALIDATING = "validating", "Validating"
    READY = "ready", "Ready"
    INVALID = "invalid", "Invalid"


class Flavor(models.TextChoices):
    SKLEARN = "sklearn", "scikit-learn (joblib)"


class VersionEventKind(models.TextChoices):
    REGISTERED = "registered", "Registered"
    EDITED = "edited", "Edited"
    ARCHIVED = "archived", "Archived"
    UNARCHIVED = "unarchived", "Unarchived"
    VALIDATION_STARTED = "validation_started", "Validation started"
    VALIDATED = "validated", "Validated"
    VALIDATION_FAILED = "validation_failed", "Validation failed"
