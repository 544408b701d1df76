from rest_framework.permissions import BasePermission

from mlops_portal.roles import has_role, refusal


class ActionRoles(BasePermission):
    """Refuse an action early (before its input is parsed) when the caller's role cannot
    do it. `view.action_roles` maps an action to (roles, description); the service behind
    the action checks the same roles again, so this is a courtesy, not the rule itself."""

    def has_permission(self, request, view):
        rule = getattr(view, "action_roles", {}).get(getattr(view, "action", None))
        if rule is None:
            return True
        roles, description = rule
        if has_role(request.user, roles):
            return True
        self.message = refusal(roles, description)
        return False
