from rest_framework.permissions import SAFE_METHODS, BasePermission

from mlops_portal.core import policy


class ActionPolicy(BasePermission):
    """Ask `mlops_portal.core.policy` about the view's action, before its input is parsed (so a
    viewer's write is a 403, never a 400 about a missing field). `view.action_policy` maps
    a DRF action to a policy action. The role part is checked here; the rule for the
    object (owner, "not your own request") when the view fetches it, and the service
    behind the action checks the whole rule again."""

    def has_permission(self, request, view):
        return self._allows(request, view, None)

    def has_object_permission(self, request, view, obj):
        return self._allows(request, view, obj)

    def _allows(self, request, view, obj) -> bool:
        if request.method in SAFE_METHODS:  # `comments/` and `notes/` also answer GET
            return True
        action = getattr(view, "action_policy", {}).get(getattr(view, "action", None))
        if action is None:
            return True
        try:
            policy.require(request.user, action, obj)
        except policy.PermissionDenied as refused:
            self.message = str(refused)
            return False
        return True


class TokenScope(BasePermission):
    """A read-only API token may read (GET, HEAD, OPTIONS) and nothing else, whatever its
    user's role allows."""

    message = (
        "This API token is read-only: it may read, not change anything. Use a read-write token."
    )

    def has_permission(self, request, view):
        credential = request.auth
        return request.method in SAFE_METHODS or not getattr(credential, "read_only", False)
