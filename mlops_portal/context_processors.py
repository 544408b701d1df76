from mlops_portal.core.roles import role_label


def roles(request):
    """The header's role badge. What a user may do is asked of `mlops_portal.core.policy`
    (`{% can %}` in templates), not of role flags."""
    user = request.user
    if not user.is_authenticated:
        return {}
    return {
        "user_role": role_label(user),
    }
