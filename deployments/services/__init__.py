"""Every state change of the deployments app, one module per resource. Forms, the API and
tasks call these; each function checks permission, validates, writes its event row and
enqueues work on commit."""

from deployments.services.registry import (
    can_edit_model,
    create_model,
    register_version,
    set_version_archived,
    stale_validation_ids,
    update_model,
    update_version,
    validate_version,
)

__all__ = [
    "can_edit_model",
    "create_model",
    "register_version",
    "set_version_archived",
    "stale_validation_ids",
    "update_model",
    "update_version",
    "validate_version",
]
