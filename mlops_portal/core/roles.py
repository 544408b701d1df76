"""Roles are Django groups (created by migration 0002); these helpers are the only place
that asks which role a user has. Who may do what is `mlops_portal.core.policy`'s."""

from django.db import models


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    DATA_SCIENTIST = "data_scientist", "Data scientist"
    MLOPS_ENGINEER = "mlops_engineer", "MLOps engineer"


ROLE_PLURALS = {
    Role.VIEWER: "viewers",
    Role.DATA_SCIENTIST: "data scientists",
    Role.MLOPS_ENGINEER: "MLOps engineers",
}

# Groups of roles; `mlops_portal.core.policy` gives them to actions.
AUTHORS = (Role.DATA_SCIENTIST, Role.MLOPS_ENGINEER)
OPERATORS = (Role.MLOPS_ENGINEER,)


def roles_of(user) -> frozenset[str]:
    """Return the role names of `user`, read once per request and cached on the object."""
    if not user.is_authenticated:
        return frozenset()
    cached = getattr(user, "_portal_roles", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("name", flat=True))
        user._portal_roles = cached
    return cached


def has_role(user, roles) -> bool:
    """True when `user` is a superuser or belongs to one of `roles`."""
    if not user.is_authenticated:
        return False
    return user.is_superuser or bool(roles_of(user) & {str(role) for role in roles})


def refusal(roles, action: str) -> str:
    """The message for a user whose role does not allow `action`."""
    allowed = " or ".join(ROLE_PLURALS[Role(role)] for role in roles)
    return f"Only {allowed} may {action}."


def role_label(user) -> str:
    """The most powerful role of `user`, for the header badge."""
    if user.is_superuser:
        return "admin"
    for role in (Role.MLOPS_ENGINEER, Role.DATA_SCIENTIST, Role.VIEWER):
        if role in roles_of(user):
            return role.label
    return "no role"
