"""Who may do what, in one place.

One rule per action. Services call `require(user, action, obj)` before they change
anything; views, the API's `ActionPolicy` permission and templates (`{% can %}`) call
`can(...)` to decide what to offer. Nothing else names a role for a permission.

`can(user, action)` without an object answers "may this user do it to some object?" (the
role part of the rule): a page uses it to offer a "New …" button, the API to refuse a write
before parsing its body. With the object it answers for that object (ownership, "not your
own request").

This module imports no feature app: objects are read by their attributes (`owner_id`,
`requested_by_id`, `model`), so `deployments`, `monitoring` and `docs_app` can import it.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied

from mlops_portal.core.roles import AUTHORS, OPERATORS, Role, has_role, refusal

ANY_ROLE = tuple(Role)


@dataclass(frozen=True)
class Rule:
    """`roles` may do `action` at all; `allows(user, obj)` then decides for one object and
    `refused(user, obj)` says why not (a sentence for the error page or the API's 403)."""

    roles: tuple | None  # None: any logged-in user, even one without a role
    description: str  # "approve deployments", for "Only MLOps engineers may …"
    allows: Callable | None = None
    refused: Callable | None = None


RULES: dict[str, Rule] = {}


def rule(action, roles, description, allows=None, refused=None) -> None:
    RULES[action] = Rule(roles, description, allows, refused)


def can(user, action: str, obj=None) -> bool:
    """True when `user` may do `action` (to `obj`, when given)."""
    return _refusal(user, action, obj) is None


def require(user, action: str, obj=None) -> None:
    """Raise PermissionDenied, saying who may, unless `user` may do `action` (to `obj`)."""
    message = _refusal(user, action, obj)
    if message is not None:
        raise PermissionDenied(message)


def _refusal(user, action, obj) -> str | None:
    """None when allowed, otherwise the message explaining the refusal."""
    found = RULES[action]  # a KeyError here is a typo in an action name: fail loudly
    if not user.is_authenticated:
        return "Log in first."
    if found.roles is not None and not has_role(user, found.roles):
        return refusal(found.roles, found.description)
    if obj is None or found.allows is None or found.allows(user, obj):
        return None
    return found.refused(user, obj)


# --- object conditions ---------------------------------------------------------------------


def _is_operator(user) -> bool:
    return has_role(user, OPERATORS)


def _owns_model(user, model) -> bool:
    return model.owner_id == user.pk or _is_operator(user)


def _owns_version(user, version) -> bool:
    return _owns_model(user, version.model)


def _requested_or_operates(user, deployment) -> bool:
    return deployment.requested_by_id == user.pk or _is_operator(user)


def _not_own_request(user, deployment) -> bool:
    return deployment.requested_by_id != user.pk


def _owns_token(user, token) -> bool:
    return token.user_id == user.pk


def _says(message: str) -> Callable:
    return lambda user, obj: message


MODEL_OWNER = "Only the model's owner or an MLOps engineer may change it."
OWN_REQUEST = "You requested this deployment; another engineer must approve it."

# --- the rules --------------------------------------------------------------------------------
# Registry. A version belongs to its model's owner: nobody else's pipeline may add to it.
# (RegisteredModel.team is a free-text label and users have no team, so "same team" cannot
# be decided; the owner hands a model over by asking an engineer.)
rule("model.create", AUTHORS, "create models")
rule("model.edit", AUTHORS, "change models", _owns_model, _says(MODEL_OWNER))
rule(
    "version.register", AUTHORS, "register model versions", _owns_model,
    _says("Only the model's owner or an MLOps engineer may register versions of it."),
)  # fmt: skip
rule("version.edit", AUTHORS, "change model versions", _owns_version, _says(MODEL_OWNER))
# Deleting (MLflow API) and aliases: what the owner may change about the model, an
# engineer too. An alias moves deploy requests that name it, so it is not anyone's.
rule("model.delete", AUTHORS, "delete models", _owns_model, _says(MODEL_OWNER))
rule("version.delete", AUTHORS, "delete model versions", _owns_version, _says(MODEL_OWNER))
rule("alias.set", AUTHORS, "set model aliases", _owns_model, _says(MODEL_OWNER))

# Deployments.
rule("deployment.request", AUTHORS, "request deployments")
rule(
    "deployment.cancel", AUTHORS, "cancel deployment requests", _requested_or_operates,
    _says("Only the requester or an MLOps engineer may cancel it."),
)  # fmt: skip
rule("deployment.approve", OPERATORS, "approve deployments", _not_own_request, _says(OWN_REQUEST))
rule("deployment.reject", OPERATORS, "reject deployments")
rule("deployment.rollback", OPERATORS, "roll back deployments")
rule("deployment.canary", OPERATORS, "promote or abort canaries")
rule("deployment.comment", AUTHORS, "comment on deployments")
rule("deployment.try", AUTHORS, "try deployed models")
rule("target.manage", OPERATORS, "manage targets")

# Monitoring.
rule("check.manage", OPERATORS, "manage health checks")
rule("check.pause", OPERATORS, "pause health checks")
rule("check.snooze", OPERATORS, "snooze health checks")
rule("rule.manage", OPERATORS, "manage alert rules")
rule("incident.open", AUTHORS, "open incidents")
rule("incident.acknowledge", OPERATORS, "acknowledge incidents")
rule("incident.mitigate", OPERATORS, "mitigate incidents")
rule("incident.resolve", OPERATORS, "resolve incidents")
rule("incident.severity", OPERATORS, "change incident severity")
rule("incident.note", AUTHORS, "add notes to incidents")
rule("prediction.feedback", AUTHORS, "send feedback labels for predictions")

# Operations: the banner when beat is late or a queue has no consumer, and /readyz in a browser.
rule("ops.view", OPERATORS, "see the portal's operations warnings")

# Documentation: writing, editing, deleting, restoring, attaching, postmortems.
rule("docs.write", AUTHORS, "write documentation")

# Accounts. Following, tokens and one's own email choices change nothing anyone else sees.
rule("channel.manage", OPERATORS, "configure notification channels")
rule("delivery.list_all", OPERATORS, "list every delivery")
rule("follow", ANY_ROLE, "follow models and targets")
rule("token.create", None, "create API tokens")
rule(
    "token.revoke", None, "revoke API tokens", _owns_token,
    _says("You can only revoke your own tokens."),
)  # fmt: skip
rule("preferences.edit", None, "choose email notifications")
