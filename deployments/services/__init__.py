"""Every state change of the deployments app, one module per resource. Forms, the API and
tasks call these; each function checks permission, validates, writes its event row and
enqueues work on commit."""

from deployments.services.registry import (
    create_model,
    delete_model,
    delete_version,
    register_version,
    rename_model,
    set_key_value_tag,
    set_version_archived,
    stale_validation_ids,
    update_model,
    update_version,
    validate_version,
)
from deployments.services.rollouts import (
    add_comment,
    approve_deployment,
    awaiting_decision_by,
    cancel_deployment,
    complete_deployment,
    fail_deployment,
    previous_good_deployment,
    receive_callback,
    reconcile_deployments,
    reject_deployment,
    request_deployment,
    rollback_deployment,
    run_deployment,
)
from deployments.services.targets import create_target, update_target
from deployments.services.trying import try_predict

__all__ = [
    "add_comment",
    "approve_deployment",
    "awaiting_decision_by",
    "cancel_deployment",
    "complete_deployment",
    "create_model",
    "create_target",
    "delete_model",
    "delete_version",
    "fail_deployment",
    "previous_good_deployment",
    "receive_callback",
    "reconcile_deployments",
    "register_version",
    "reject_deployment",
    "rename_model",
    "request_deployment",
    "rollback_deployment",
    "run_deployment",
    "set_key_value_tag",
    "set_version_archived",
    "stale_validation_ids",
    "try_predict",
    "update_model",
    "update_target",
    "update_version",
    "validate_version",
]
