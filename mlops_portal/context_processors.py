from django.utils.functional import SimpleLazyObject

from mlops_portal.core.policy import can
from mlops_portal.core.roles import role_label


def roles(request):
    """The header's role badge. What a user may do is asked of `mlops_portal.core.policy`
    (`{% can %}` in templates), not of role flags."""
    user = request.user
    if not user.is_authenticated:
        return {}
    from mlops_portal.overview.notifications import unread_count

    return {
        "user_role": role_label(user),
        # Counted only when a template shows it (the navbar bell), not for partials.
        "unread_notifications": SimpleLazyObject(lambda: unread_count(user)),
    }


def operations(request):
    """Whether the page carries the operations banner, which engineers see when beat is late
    or jobs wait in a queue nobody consumes. The banner loads with its own request (htmx,
    `ops_banner`), so no page pays for its queries."""
    user = getattr(request, "user", None)
    return {"shows_ops_banner": user is not None and can(user, "ops.view")}
