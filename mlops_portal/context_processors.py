from django.utils.functional import SimpleLazyObject

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
